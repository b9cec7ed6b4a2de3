"""The runtime's sandbox on this machine: time limits end a command's whole process group, long output is cut in the
middle, each environment's wording of a command's end, files in and out."""

from __future__ import annotations

from pathlib import Path

from gymbox.environments.runtime.sandbox import ExecResult, LocalSandbox, OutputCap, Wording
from gymbox.environments.shell.env import WORDING as SHELL


def test_output_past_the_cap_is_cut_in_the_middle() -> None:
    cap = OutputCap(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"):
        cap.add(chunk)
    assert cap.text("[... {omitted} cut ...]") == ("abcde\n[... 16 cut ...]\nvwxyz", 16)
    short = OutputCap(10)
    short.add("é".encode() * 5)  # ten bytes: kept whole, and a character across the middle stays whole
    assert short.text("[{omitted}]") == ("ééééé", 0)


def test_each_environment_words_the_end_of_a_command_its_own_way() -> None:
    def result(code: int | None, output: str, wording: Wording) -> str:
        return ExecResult(code, output, 1.0, 3.0, wording=wording).render()

    assert result(0, "ok\n", Wording()) == "ok\n"
    assert result(2, " \n", Wording()) == "(no output)\n[exit code 2]"
    assert result(None, "", Wording()) == "(no output)\n[killed: the command ran past its time limit of 3 s]"
    assert result(0, "", SHELL) == "[exit code 0]"
    assert result(0, "\nok\n", SHELL) == "ok\n\n[exit code 0]"
    assert result(None, "x", SHELL).startswith("x\n[command killed after 3 s, with every process it started;")


def test_a_command_past_its_limit_ends_with_everything_it_started(tmp_path: Path) -> None:
    with LocalSandbox(tmp_path, wording=SHELL) as box:
        result = box.exec("sleep 30 & echo $! > bg.pid; sleep 30", timeout=1)
        assert result.timed_out
        assert "command killed after 1 s" in result.render()
        background = int((tmp_path / "bg.pid").read_text())
        stat = Path(f"/proc/{background}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_long_output_env_and_files(tmp_path: Path) -> None:
    box = LocalSandbox(tmp_path, env={"PATH": "/usr/bin:/bin", "A": "1"}, wording=SHELL)
    loud = box.exec("head -c 100000 /dev/zero | tr '\\0' a", timeout=10, max_output=1000)
    assert loud.omitted == 99_000 and "[... 99000 bytes of output omitted ...]" in loud.output
    assert box.exec("echo $A$B", timeout=5, env={"B": "2"}).output == "12\n"
    box.put_files({"sub/x.txt": b"hi", str(tmp_path / "y.txt"): b"yo"}, mode=0o600)
    assert box.read_file("sub/x.txt") == b"hi" and box.read_file(str(tmp_path / "y.txt")) == b"yo"
    assert box.read_file("missing.txt") is None and box.read_file("sub") is None
    failed = box.exec("cat nothing-here", timeout=5)
    assert failed.exit_code == 1 and failed.render().endswith("[exit code 1]")
    box.close()
