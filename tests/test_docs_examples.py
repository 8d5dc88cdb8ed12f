"""Every fenced block in README.md, docs/*.md and deploy/README.md runs as written (or is
marked why not).

How a block is treated follows its info string, so a new block either runs or is marked
when it is added:

* ```` ```python ````: run as a script (``python block.py``) with this checkout importable.
* ```` ```sh ```` / ``bash`` / ``shell``: run with ``bash -euo pipefail``; ``relaygate`` is
  this checkout's command.
* ```` ```json ```` / ``yaml``: checked with ``relaygate validate`` (exit status 0); with the
  word ``scenario`` (```` ```yaml scenario ````) loaded as a rehearsal scenario instead;
  with the word ``invalid``, an example of a refused config (exit status 1).
* ```` ```output ````: the expected output of the block run just before it.
* an untagged block whose first line starts with ``$ ``: a transcript; each ``$`` command
  is run and the output shown under it must appear in what it prints.
* any other untagged block, or ``text``: prose (a layout, a synopsis), not run.
* ``file=NAME`` in the info string (```` ```json file=fallback.json ````) also writes the
  block to ``NAME`` in the document's working directory, for the blocks after it.
* ``<!-- not-run: reason -->`` on the line before a block: not run, for the reason given
  (``make run`` itself, a block whose output cannot be reproduced, ...).

An output line is compared only when it holds no duration (``47 ms``, ``1.5 s``), since
those differ from run to run. Any other info string fails the test until it is given one
of the meanings above or marked ``not-run``.

What the blocks find: a fresh working directory per document; a healthy fault simulator
at ``$OPENAI_BASE_URL`` and ``$GROQ_BASE_URL``; ``OPENAI_API_KEY``, ``GROQ_API_KEY``,
``RELAYGATE_API_KEY`` and ``RELAYGATE_ADMIN_KEY`` set to test values; and, for a block
that talks to ``127.0.0.1:8787``, a running ``relaygate demo`` (on free ports, the block
pointed at the gateway's), so a demo already running does not get in the way. Nothing
reaches beyond loopback.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import httpx
import pytest

from relaygate.cli import main
from relaygate.rehearse.scenario import ScenarioError, load_scenario
from tests.conftest import MockFactory
from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "deploy" / "README.md"]

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`]*)$")
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.+?)\s*-->")
DURATION = re.compile(r"\d(\.\d+)?\s?(ms|s)\b")
SHELLS = {"sh", "bash", "shell"}
CONFIGS = {"json", "yaml", "yml"}
DEMO_ADDRESS = "127.0.0.1:8787"
BLOCK_TIMEOUT_S = 120

ENV = {
    "OPENAI_API_KEY": "sk-docs-openai",
    "GROQ_API_KEY": "gsk-docs-groq",
    "RELAYGATE_API_KEY": "rk-docs-gateway",
    "RELAYGATE_ADMIN_KEY": "ak-docs-admin",
}


@dataclass
class Block:
    """One fenced block: where it is, its info string's language and words, its text."""

    doc: str
    line: int
    lang: str
    words: list[str]
    text: str
    not_run: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path, root: Path = REPO) -> list[Block]:
    """The fenced blocks of a Markdown file, indented ones (in list items) included;
    ``Block.doc`` is the path relative to ``root``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        words = match["info"].split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = NOT_RUN.search(before)
        attrs = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        found.append(
            Block(
                doc=str(path.relative_to(root)),
                line=i + 1,
                lang=words[0].lower() if words else "",
                words=words[1:],
                text="\n".join(body) + "\n",
                not_run=marker["reason"] if marker else None,
                attrs=attrs,
            )
        )
        i = j + 1
    return found


def missing_lines(expected: str, actual: str) -> list[str]:
    """Lines of ``expected`` (durations aside) that do not appear in ``actual``."""
    have = {line.rstrip() for line in actual.splitlines()}
    return [
        line.rstrip()
        for line in expected.splitlines()
        if line.strip() and not DURATION.search(line) and line.rstrip() not in have
    ]


class Runner:
    """Runs one document's blocks in order in its own working directory."""

    def __init__(self, workdir: Path, env: dict[str, str], demo: DemoStarter) -> None:
        self.workdir = workdir
        self.env = env
        self.demo = demo
        self.last_output: str | None = None

    def run(self, block: Block) -> str | None:
        """Run ``block``; the reason it failed, or ``None``."""
        if "file" in block.attrs:
            (self.workdir / block.attrs["file"]).write_text(block.text, encoding="utf-8")
        if block.not_run is not None:
            self.last_output = None
            return None
        if block.lang == "python":
            return self._process(block, [sys.executable, self._script(block, ".py")])
        if block.lang in SHELLS:
            return self._process(block, ["bash", "-euo", "pipefail", self._script(block, ".sh")])
        if block.lang in CONFIGS:
            return self._config(block)
        if block.lang == "output":
            return self._output(block)
        if block.lang in ("", "text"):
            if block.text.lstrip().startswith("$ "):
                return self._transcript(block)
            return None
        return (
            f"unknown info string {block.lang!r}: give it a meaning in {__name__} or mark "
            "it <!-- not-run: reason -->"
        )

    def _script(self, block: Block, suffix: str) -> str:
        text = block.text
        if DEMO_ADDRESS in text:
            text = text.replace(DEMO_ADDRESS, self.demo.address())
        path = self.workdir / f"block-{block.line}{suffix}"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def _call(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )

    def _process(self, block: Block, argv: list[str]) -> str | None:
        done = self._call(argv)
        self.last_output = done.stdout + done.stderr
        if done.returncode != 0:
            return f"exit status {done.returncode}:\n{self.last_output[-3000:]}"
        return None

    def _config(self, block: Block) -> str | None:
        self.last_output = None
        suffix = ".json" if block.lang == "json" else ".yaml"
        path = self.workdir / block.attrs.get("file", f"block-{block.line}{suffix}")
        path.write_text(block.text, encoding="utf-8")
        # In this process (a fresh interpreter per config would cost a second each), with
        # the blocks' environment.
        out = io.StringIO()
        with mock.patch.dict(os.environ, self.env, clear=True), contextlib.redirect_stdout(out):
            if "scenario" in block.words:
                try:
                    load_scenario(str(path))
                except ScenarioError as exc:
                    return f"not a valid scenario: {exc}"
                return None
            status = main(["validate", str(path)])
        if "invalid" in block.words:
            if status != 1:
                return f"meant to be invalid, got exit status {status}: {out.getvalue()}"
            return None
        if status != 0:
            return f"not valid:\n{out.getvalue()}"
        return None

    def _output(self, block: Block) -> str | None:
        if self.last_output is None:
            return "an output block must follow a block that ran"
        missing = missing_lines(block.text, self.last_output)
        if missing:
            return f"lines not in the output: {missing}\noutput:\n{self.last_output[-3000:]}"
        return None

    def _transcript(self, block: Block) -> str | None:
        commands: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            elif commands:
                commands[-1][1].append(line)
        for command, shown in commands:
            done = self._call(["bash", "-euo", "pipefail", "-c", command])
            output = done.stdout + done.stderr
            if not shown and done.returncode != 0:
                return f"`{command}`: exit status {done.returncode}:\n{output[-3000:]}"
            missing = missing_lines("\n".join(shown), output)
            if missing:
                return f"`{command}`: lines not in its output: {missing}\noutput:\n{output}"
        self.last_output = None
        return None


class DemoStarter:
    """Starts ``relaygate demo`` on a free port the first time a block needs it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def address(self) -> str:
        if self.proc is None:
            self.port = free_port()
            upstreams = f"{free_port()},{free_port()}"
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "relaygate.cli", "demo"),
                    *("--port", str(self.port), "--upstream-ports", upstreams),
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                        break
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("relaygate demo did not start")
                time.sleep(0.05)
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def doc_env(tmp_path: Path, mock_upstream: MockFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working directory, and the environment the blocks run in (see the module doc)."""
    upstream = mock_upstream(name="docs-upstream")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "relaygate"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m relaygate.cli "$@"\n')
    command.chmod(0o755)
    env = {
        **os.environ,
        **ENV,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OPENAI_BASE_URL": f"{upstream.url}/v1",
        "GROQ_BASE_URL": f"{upstream.url}/v1",
    }
    for name in ("RELAYGATE_LOG_LEVEL", "RELAYGATE_LOG_FORMAT", "RELAYGATE_CONFIG"):
        env.pop(name, None)
    work = tmp_path / "work"
    work.mkdir()
    yield work, env


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_block_of_the_document_runs_as_written(
    doc: Path, doc_env: tuple[Path, dict[str, str]]
) -> None:
    workdir, env = doc_env
    demo = DemoStarter(env)
    runner = Runner(workdir, env, demo)
    failures: list[str] = []
    try:
        for block in blocks(doc):
            problem = runner.run(block)
            if problem is not None:
                failures.append(f"{block.where} ({block.lang or 'untagged'}): {problem}")
    finally:
        demo.stop()
    assert not failures, "\n\n".join(failures)


def test_blocks_are_found_in_list_items_and_markers_apply(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "- item:\n\n  ```python\n  print(1)\n  ```\n\n<!-- not-run: needs keys -->\n"
        "```sh\nmake run\n```\n```json file=a.json\n{}\n```\n"
    )
    parsed = blocks(doc, root=tmp_path)
    assert [(b.lang, b.text, b.not_run, b.attrs) for b in parsed] == [
        ("python", "print(1)\n", None, {}),
        ("sh", "make run\n", "needs keys", {}),
        ("json", "{}\n", None, {"file": "a.json"}),
    ]


def test_durations_are_not_compared_and_other_lines_are() -> None:
    assert missing_lines("  1  200  backup  47 ms\nretries: 6\n", "retries: 6\n") == []
    assert missing_lines("fallbacks: 3\n", "fallbacks: 2\n") == ["fallbacks: 3"]
