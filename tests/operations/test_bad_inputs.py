"""Bad recordings give one clear line (and a non-zero exit), never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from carla_rl.nodes import mcap_io
from ros_testing import ros_env


def carla_rl(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "carla_rl.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ros_env(), stdin=subprocess.DEVNULL)


def valid_file(path):
    recorder = mcap_io.McapRecorder(path)
    recorder.add_topic("/ops_bad/chatter", "std_msgs/msg/String")
    for i in range(200):
        recorder.write("/ops_bad/chatter", b"\x00\x01\x00\x00\x06\x00\x00\x00hello\x00", i * 1000)
    recorder.close()
    return path


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_replay_of_a_missing_file(tmp_path):
    result = carla_rl("replay", str(tmp_path / "nope.mcap"))
    assert result.returncode == 1
    assert one_error_line(result) == f"carla-rl: error: {tmp_path / 'nope.mcap'}: no such file"


def test_replay_of_a_truncated_file(tmp_path):
    path = valid_file(tmp_path / "cut.mcap")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = carla_rl("replay", str(path))
    assert result.returncode == 1
    assert "truncated MCAP file" in one_error_line(result)


def test_replay_of_a_file_that_is_not_mcap(tmp_path):
    path = tmp_path / "notes.mcap"
    path.write_text("not a recording\n")
    result = carla_rl("replay", str(path))
    assert result.returncode == 1
    assert "not an MCAP file" in one_error_line(result)


def test_record_refuses_to_overwrite(tmp_path):
    path = valid_file(tmp_path / "keep.mcap")
    before = path.read_bytes()
    result = carla_rl("record", str(path), "--duration", "1")
    assert result.returncode == 1
    assert "exists" in one_error_line(result)
    assert path.read_bytes() == before


@pytest.mark.ros
def test_replay_node_with_a_missing_file_exits_with_a_configuration_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "carla_rl.nodes.mcap_replay_node", "--ros-args", "-p",
                             f"file:={tmp_path / 'nope.mcap'}"], capture_output=True, text=True, timeout=60,
                            env=ros_env(), stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert f"configuration error: {tmp_path / 'nope.mcap'}: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_player_reports_corrupt_chunks(tmp_path):
    path = valid_file(tmp_path / "flipped.mcap")
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        chunk = make_reader(f).get_summary().chunk_indexes[0]
    data = bytearray(path.read_bytes())
    inside = chunk.chunk_start_offset + chunk.chunk_length - 16  # compressed records of the chunk
    data[inside: inside + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(mcap_io.McapIoError, match="flipped.mcap"):
        list(mcap_io.McapPlayer(path).messages())
