"""A study's experiments run side by side on the CPU (cli.run_jobs): one forked process per job beyond the
first, each on its share of the intra-op threads, its figures drawn there. The rows, figures and what a job
adds to its record come back as if the jobs had run one after the other; an error in a forked job is raised
in the parent as itself; a job whose process dies leaves a clear error, and no process behind."""
import os
import signal

import pytest
import torch

import cli
import eval_cnn
import interrupts
import report


def job(name: str, body, render=lambda summaries, rows, solved_at: b"") -> cli.Job:
    figure = report.Figure(name=name, title=name, ylabel="", solved_label="", views=(), render=render)
    return cli.Job((figure,), eval_cnn.PROTOCOL, eval_cnn.PROTOCOL, body)


def drawing(name: str):
    """A job whose rows come from its generator and whose record says which process ran it and which drew
    its figure."""
    def body(gen: torch.Generator):
        made.record.update(pid=os.getpid(), threads=torch.get_num_threads())
        return {name: [report.Row(name, 1, 5, r, float(v)) for r, v in enumerate(torch.rand(4, generator=gen))]}

    def render(summaries, rows, solved_at):
        made.record.update(drawn_by=os.getpid())
        return f"{name}: {len(rows)} rows".encode()
    made = job(name, body, render)
    return made


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_jobs_side_by_side_give_what_they_give_one_after_the_other(two_threads):
    cpu = torch.device("cpu")
    jobs = [drawing("a"), drawing("b")]
    assert cli.side_by_side(jobs, cpu)
    together = cli.run_jobs(jobs, cpu, seed=3)
    assert jobs[0].record["pid"] == os.getpid() != jobs[1].record["pid"]      # the second ran in a fork
    assert [j.record["drawn_by"] for j in jobs] == [j.record["pid"] for j in jobs]   # and was drawn there
    assert [r.shown[n].png for r, n in zip(together, "ab")] == [b"a: 4 rows", b"b: 4 rows"]
    assert jobs[0].record["threads"] == jobs[1].record["threads"] == 1          # each on its share
    assert torch.get_num_threads() == 2 and not interrupts.CHILDREN             # restored, reaped
    alone = [cli.ran(j, cpu, 3) for j in [drawing("a"), drawing("b")]]
    assert [r.rows for r in together] == [r.rows for r in alone]
    torch.set_num_threads(1)
    assert not cli.side_by_side(jobs, cpu)                                       # one thread allowed: in order


def test_an_error_in_a_forked_job_is_raised_in_the_parent_as_itself(two_threads):
    def refuse(gen):
        raise cli.UsageError("--rounds too large for experiment b")
    with pytest.raises(cli.UsageError, match="too large for experiment b"):
        cli.run_jobs([drawing("a"), job("b", refuse)], torch.device("cpu"), 0)
    assert not interrupts.CHILDREN


def test_a_forked_job_that_dies_leaves_a_clear_error_and_no_process(two_threads, tmp_path):
    def die(gen):
        (tmp_path / "pid").write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    with pytest.raises(MemoryError, match="the process of b ended without its results"):
        cli.run_jobs([drawing("a"), job("b", die)], torch.device("cpu"), 0)
    assert not interrupts.CHILDREN
    with pytest.raises(ChildProcessError):                                        # (the tests' background work
        os.waitpid(int((tmp_path / "pid").read_text()), os.WNOHANG)              # has processes of its own)
