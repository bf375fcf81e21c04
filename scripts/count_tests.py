#!/usr/bin/env python3
"""Counts individual test cases in meson's JUnit logs and prints 'N passed, N failed, N skipped'.

meson reports one result per test program; for GoogleTest programs its JUnit log also holds every
test case, which is what this counts. Exits 1 if any case failed or no case ran."""
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sys.argv[1:]:
    root = ET.parse(path).getroot()
    for suite in root.iter("testsuite"):
        cases = list(suite.iter("testcase"))
        for case in cases:
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or passed == 0 else 0)
