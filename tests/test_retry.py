"""dc2flow.retry: why the last attempt failed, and the request of the retry."""

from __future__ import annotations

import argparse
import json
import os

from dc2flow import retry
from dc2flow.retry import OTHER, OUT_OF_MEMORY, TIME_LIMIT, Attempt

# sacct -n -P -o JobID,State,ExitCode,MaxRSS,ReqMem as the test cluster (Slurm 22.05,
# JobAcctGatherParams=OverMemoryKill) printed it for a step killed over --mem=100 and a scancel
OVER_MEMORY_KILL = ["1|FAILED|9:0||100M", "1.batch|FAILED|9:0|12420K|", "1.0|CANCELLED by 0|0:9|423124K|"]
SCANCEL = ["2|CANCELLED by 0|0:0||100M", "2.batch|CANCELLED|0:15|10480K|", "2.0|CANCELLED|0:15|1608K|"]


def test_sacct_causes():
    assert retry.classify_sacct(OVER_MEMORY_KILL) == OUT_OF_MEMORY
    assert retry.classify_sacct(SCANCEL) == OTHER
    # cgroup enforcement (ConstrainRAMSpace) says so itself
    assert retry.classify_sacct(["7|OUT_OF_MEMORY|0:125||2000M", "7.0|OUT_OF_MEMORY|0:125|1999000K|"]) == OUT_OF_MEMORY
    assert retry.classify_sacct(["8|TIMEOUT|0:0||2000M", "8.0|CANCELLED|0:15|5000K|"]) == TIME_LIMIT
    # killed by signal 9 far below the request (kill -9, a node lost): not a memory kill
    assert retry.classify_sacct(["9|FAILED|9:0||2000M", "9.0|FAILED|0:9|50000K|"]) == OTHER
    assert retry.classify_sacct(["10|FAILED|1:0||2000M", "10.0|FAILED|1:0|1900000K|"]) == OTHER  # an error
    assert retry.classify_sacct(["11|NODE_FAIL|0:0||2Gn"]) == OTHER
    assert retry.classify_sacct(["12|FAILED|9:0||2Gn", "12.0|FAILED|0:9|2097152K|"]) == OUT_OF_MEMORY


def test_next_request_grows_only_for_its_cause():
    last = Attempt(mem_mb=1500, runtime_min=10)
    grow = dict(growth=1.5, mem_cap_mb=4000, runtime_cap_min=60)
    assert retry.next_request(1000, 10, last, OUT_OF_MEMORY, **grow) == (2250, 10)
    assert retry.next_request(1000, 10, last, TIME_LIMIT, **grow) == (1500, 15)
    assert retry.next_request(1000, 10, last, OTHER, **grow) == (1500, 10)    # cancelled: the same again
    assert retry.next_request(1000, 10, last, None, **grow) == (1500, 10)     # unknown: the same again
    assert retry.next_request(1000, 10, None, None, **grow) == (1000, 10)     # no record: the plan's
    # capped at the member's share of the node, never below the plan
    assert retry.next_request(1000, 10, Attempt(3000, 50), OUT_OF_MEMORY, **grow) == (4000, 50)
    assert retry.next_request(1000, 50, Attempt(3000, 50), TIME_LIMIT, **grow) == (3000, 60)
    assert retry.next_request(5000, 10, Attempt(5000, 10), OUT_OF_MEMORY, **grow) == (5000, 10)


def test_record_written_at_start_and_removed_on_success(tmp_path, monkeypatch):
    record = tmp_path / "failures" / "attempts" / "render" / "00001001_R22_S11.json"
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    args = argparse.Namespace(attempt_record=str(record), attempt_mem_mb=1234, attempt_runtime_min=7)
    retry.begin(args)
    data = json.loads(record.read_text())
    assert (data["mem_mb"], data["runtime_min"], data["slurm_job_id"]) == (1234, 7, "42")
    assert Attempt.read(record) == Attempt(1234, 7, "42", data["oom_counter"], data["oom_kills"])
    assert [p.name for p in record.parent.iterdir()] == [record.name]  # no temporary left
    retry.succeeded(args)
    assert not record.exists()
    retry.succeeded(args)  # twice is fine
    assert retry.last_attempt(str(record)) == (None, None)


def test_local_cause_from_the_cgroup_counter(tmp_path):
    counter = tmp_path / "memory.events"
    counter.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    attempt = Attempt(1000, 10, None, str(counter), 1)
    assert retry.cause(attempt) == OTHER
    counter.write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")  # the kernel killed one since
    assert retry.cause(attempt) == OUT_OF_MEMORY
    assert retry.cause(Attempt(1000, 10)) is None  # neither Slurm nor a counter: unknown


def test_oom_counter_file_v1_and_v2(tmp_path):
    proc = tmp_path / "cgroup"
    (tmp_path / "sys" / "memory" / "job").mkdir(parents=True)
    (tmp_path / "sys" / "memory" / "job" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    proc.write_text("4:memory:/job\n0::/\n")
    file = retry.oom_counter_file(str(proc), str(tmp_path / "sys"))
    assert file == os.path.normpath(tmp_path / "sys" / "memory" / "job" / "memory.oom_control")
    assert retry.read_oom_kills(file) == 5
    (tmp_path / "sys" / "a").mkdir()
    (tmp_path / "sys" / "a" / "memory.events").write_text("oom 0\noom_kill 0\n")
    proc.write_text("0::/a\n")
    assert retry.read_oom_kills(retry.oom_counter_file(str(proc), str(tmp_path / "sys"))) == 0
