"""Every process the lab tests start gets a stdin of its own (stdin=subprocess.DEVNULL).

An ssh or Ansible worker killed with SIGKILL cannot put back the blocking mode it set on a
stdin it shared with the test, and ansible-core 2.19 then refuses to start ("Ansible requires
blocking IO on stdin/stdout/stderr"). That failed the killed-evacuation test in CI, where
stdin is not a terminal."""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
STARTERS = {"run", "Popen", "check_output", "check_call", "call"}


def _calls_without_stdin(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        if node.func.attr in STARTERS and isinstance(owner, ast.Name) and owner.id == "subprocess":
            if not any(keyword.arg == "stdin" for keyword in node.keywords):
                yield node.lineno


def test_every_child_of_the_lab_tests_gets_its_own_stdin():
    found = []
    for folder, _dirs, files in os.walk(os.path.join(REPO, "tests", "integration")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                found += ["%s:%d" % (os.path.relpath(path, REPO), line) for line in _calls_without_stdin(path)]
    assert found == []
