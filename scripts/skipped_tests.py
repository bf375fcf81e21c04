#!/usr/bin/env python3
"""Prints a --gtest_filter of the e2e cases that skipped in meson's JUnit log (the cases that need
a guest, on a host where guests cannot run), limited to those matching PATTERN (a gtest filter:
':'-separated names with * and ?). scripts/test.sh runs exactly these in the nested-KVM VM's ASan
pass, so cases without a guest, which already ran on the host under ASan, do not run twice.

    skipped_tests.py JUNIT.xml PATTERN"""
import fnmatch
import sys
import xml.etree.ElementTree as ET

junit, pattern = sys.argv[1], sys.argv[2]
patterns = pattern.split(":")
names = []
for suite in ET.parse(junit).getroot().iter("testsuite"):
    if not suite.get("name", "").startswith("kiln.kiln / e2e."):
        continue
    for case in suite.iter("testcase"):
        if case.find("skipped") is None:
            continue
        name = f"{case.get('classname')}.{case.get('name')}"
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            names.append(name)
if not names:
    sys.exit("skipped_tests: no skipped e2e case matches " + pattern)
print(":".join(names))
