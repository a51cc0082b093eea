"""The playbooks read as steps (issue 9): no Jinja statement (a loop, an accumulator, a branch)
in any YAML file under playbooks/; such logic is a module's, an action plugin's or a filter's."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
STATEMENT = re.compile(r"\{%|namespace\(")


def test_no_jinja_statement_in_the_playbooks():
    found = []
    for folder, _dirs, files in os.walk(os.path.join(REPO, "playbooks")):
        for name in files:
            if not name.endswith((".yml", ".yaml")):
                continue
            path = os.path.join(folder, name)
            with open(path) as handle:
                for number, line in enumerate(handle, 1):
                    if STATEMENT.search(line):
                        found.append("%s:%d: %s" % (os.path.relpath(path, REPO), number, line.strip()))
    assert found == []
