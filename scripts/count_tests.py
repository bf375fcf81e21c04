#!/usr/bin/env python3
"""Counts individual test cases in meson's JUnit logs and prints 'N passed, N failed, N skipped'.

meson reports one result per test program; for GoogleTest programs its JUnit log also holds every
test case, which is what this counts. Each failed case is printed with the start of its failure
message (a CI log keeps only the end of a nested VM's output). Exits 1 if any case failed or no
case ran."""
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sys.argv[1:]:
    root = ET.parse(path).getroot()
    for suite in root.iter("testsuite"):
        cases = list(suite.iter("testcase"))
        for case in cases:
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None:
                failed += 1
                text = (bad.get("message") or "") + "\n" + (bad.text or "")
                print(f"FAILED {case.get('classname', '')}.{case.get('name', '')} ({path}):")
                print(text.strip()[:3000])
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or passed == 0 else 0)
