"""The two commands the README opens with, read from README.md itself.

``python3 tests/readme_commands.py test`` prints the test command. ``.ci/run`` holds the
same command word for word; tests/test_readme_and_ci.py checks that the two agree.
"""
import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def commands():
    """(main job command, test command): the first two ```bash blocks of README.md."""
    blocks = re.findall(r"```bash\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S)
    if len(blocks) < 2:
        raise SystemExit("README.md must open with two ```bash blocks (main job, tests)")
    return blocks[0].strip(), blocks[1].strip()


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "test"
    print(commands()[0 if which == "main" else 1])
