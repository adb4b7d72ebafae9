"""The orchestrator: starts every stream and caller, injects faults on a seeded schedule, keeps
the books (ledger.py), watches for leaks (probe.py), stops everything and writes the report."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import probe
from .broker import Mosquitto, find_mosquitto, free_port
from .ledger import Ledger, ReceiverLife
from .procs import MARK, Agent, alive, marked
from .streams import (
    CALLS,
    GARBAGE,
    KILL_CALLER,
    KILL_HOST,
    KILL_RECEIVER,
    KILL_SENDER,
    RESTART_BROKER,
    RESTART_RECEIVER,
    SLOW,
    STREAMS,
    TRUNCATE,
    CallSpec,
    StreamSpec,
)

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@dataclass
class Options:
    minutes: float
    out: Path
    seed: int
    rate: float
    call_rate: float
    fault_every: float | None
    sample_every: float
    progress_every: float
    cycle_every: float
    pad: int
    skip: set[str]
    only: set[str]
    inject_loss: bool
    inject_dup: bool
    argv: list[str]


@dataclass
class StreamState:
    spec: StreamSpec
    url: str
    sender: Agent | None = None
    receiver: Agent | None = None
    lives: int = 0
    child_name: str | None = None  # stdio: the current child sender and its pid
    child_pid: int | None = None
    port: int | None = None
    path: Path | None = None


@dataclass
class CallerState:
    spec: CallSpec
    agent: Agent | None = None
    lives: int = 0
    host_pid: int | None = None
    pending: int = 0
    lib_pending: int = -1


@dataclass
class Timeline:
    """Seconds since the start of the measured run (everything up and ready)."""

    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.t0


class Soak:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.run_id = uuid.uuid4().hex[:12]
        self.tmp = Path(tempfile.mkdtemp(prefix="bothways-soak-"))
        self.env = {**os.environ, MARK: self.run_id, "SOAK_PYTHON": sys.executable}
        self.clock = Timeline()
        self.duration = options.minutes * 60
        self.ledger = Ledger({spec.name: spec.promise for spec in STREAMS})
        options.out.mkdir(parents=True, exist_ok=True)
        self.log = (options.out / "agents.log").open("w")
        self.log_lock = threading.Lock()
        self.streams: dict[str, StreamState] = {}
        self.callers: dict[str, CallerState] = {}
        self.lives: dict[str, ReceiverLife] = {}  # receiver agent name -> its life in the books
        self.series: dict[tuple[str, int], probe.Series] = {}
        self.stopping = threading.Event()
        self.shutting_down = False
        self.faults_done = threading.Event()
        self.broker: Mosquitto | None = None
        self.garbage_count = 0
        self.dropped = False
        self.doubled = False
        self.fault_pairs: list[tuple[str, str]] = []
        self.fault_interval = 0.0
        self.warmup = 0.0  # leaks are judged on samples after this
        self.ready_at = 0.0
        self.faults_from = 0.0
        self.ended_at = 0.0
        self.leftovers: list[int] = []
        self.tmp_removed = False

    # ------------------------------------------------------------------------------------
    # Starting things

    def say(self, text: str) -> None:
        print(text, flush=True)

    def agent(self, key: str, name: str, lang: str, role: str, args: list[str]) -> Agent:
        return Agent(
            key,
            name,
            lang,
            role,
            args,
            env=self.env,
            log=self.log,
            log_lock=self.log_lock,
            on_event=self.on_event,
            on_exit=self.on_exit,
        )

    def url_for(self, spec: StreamSpec) -> tuple[str, int | None, Path | None]:
        folder = self.tmp / spec.name
        folder.mkdir()
        if spec.channel == "tcp":
            port = free_port()
            return f"tcp://127.0.0.1:{port}?reconnect=1", port, None
        if spec.channel == "ws":
            port = free_port()
            return f"ws://127.0.0.1:{port}/soak?reconnect=1", port, None
        if spec.channel == "fifo":
            return f"fifo:{folder}/pipe", None, folder / "pipe"
        if spec.channel == "file":
            data, state = folder / "data.ndjson", folder / "state.json"
            return f"file:{data}?max_bytes=65536&keep=8&state={state}", None, data
        if spec.channel == "mqtt":
            assert self.broker is not None
            return f"mqtt://127.0.0.1:{self.broker.port}/soak/{spec.name}?qos=1", self.broker.port, None
        return "stdio:", None, None

    def start_receiver(self, st: StreamState) -> Agent:
        spec = st.spec
        st.lives += 1
        name = f"{spec.name}.r{st.lives}"
        common = ["--rate", str(self.o.rate), "--pad", str(self.o.pad)]
        if spec.channel == "stdio":
            agent = self.agent(
                f"{spec.name}/parent", name, spec.receiver, "stdio-parent", ["--inc", name, *common]
            )
        else:
            url = st.url
            if spec.channel == "mqtt":  # a persistent session: what is published while it is away is kept
                url += f"&client_id=soak-{self.run_id}-{spec.name}"
            agent = self.agent(
                f"{spec.name}/receiver", name, spec.receiver, "receiver", ["--url", url, *common]
            )
        self.lives[name] = self.ledger.receiver(name, spec.name, self.clock.now())
        st.receiver = agent
        return agent

    def start_sender(self, st: StreamState) -> Agent:
        spec = st.spec
        st.lives += 1
        name = f"{spec.name}.s{st.lives}"
        self.ledger.sender(name, spec.name, self.clock.now())
        args = ["--url", st.url, "--inc", name, "--rate", str(self.o.rate), "--pad", str(self.o.pad)]
        st.sender = self.agent(f"{spec.name}/sender", name, spec.sender, "sender", args)
        return st.sender

    def start_caller(self, cs: CallerState) -> Agent:
        cs.lives += 1
        name = f"{cs.spec.name}.c{cs.lives}"
        self.ledger.call_book(cs.spec.name)
        args = ["--rate", str(self.o.call_rate)]
        cs.agent = self.agent(f"{cs.spec.name}/caller", name, cs.spec.caller, "caller", args)
        return cs.agent

    def wait_ready(self, agents: list[Agent]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for agent in agents:
            if not agent.ready.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(
                    f"{agent.name} was not ready within {READY_TIMEOUT:g} s: {agent.exit_text}"
                )

    def start(self) -> None:
        mosquitto = find_mosquitto()
        if mosquitto is None:
            raise RuntimeError("mosquitto is not installed (make setup installs Debian's)")
        self.broker = Mosquitto(mosquitto, self.tmp / "broker", self.env)
        self.broker.start()
        for spec in STREAMS:
            url, port, path = self.url_for(spec)
            self.streams[spec.name] = StreamState(spec, url, port=port, path=path)
        # Receivers first: an MQTT subscriber must hold its session before anything is published.
        self.wait_ready([self.start_receiver(st) for st in self.streams.values()])
        senders = [self.start_sender(st) for st in self.streams.values() if st.spec.channel != "stdio"]
        for call in CALLS:
            self.callers[call.name] = CallerState(call)
        callers = [self.start_caller(cs) for cs in self.callers.values()]
        self.wait_ready(senders + callers)

    # ------------------------------------------------------------------------------------
    # Events from the agents (their reader threads)

    def on_event(self, agent: Agent, event: dict[str, Any]) -> None:
        t = self.clock.now()
        ev = event.get("ev")
        stream = agent.key.split("/")[0]
        books = self.ledger
        if ev == "sent":
            books.progress(stream, event["i"], t, event["upto"])
        elif ev == "got":
            items = event["items"]
            if self.o.inject_loss and not self.dropped and t > self.warmup and stream == "tcp-node2py":
                self.dropped = True  # --inject-loss: the checker must call this one lost
                items = items[1:]
            if self.o.inject_dup and not self.doubled and t > self.warmup and stream == "fifo-node2py":
                self.doubled = True  # --inject-dup: and this one an unexplained duplicate
                items = items + items[:1]
            books.got(self.lives[agent.name], t, items)
        elif ev == "checkpoint":
            books.checkpoint(stream, event["i"], t, event["upto"], event["ok"], event.get("error", ""))
        elif ev == "send_error":
            books.send_error(stream, event["i"], t, event["n"], event["error"])
        elif ev == "connect_retry":
            with books.lock:
                books.connect_retries[stream] += 1
        elif ev == "truncating":
            books.truncation(event["items"])
        elif ev == "bad":
            books.bad(stream, t, event["kind"], f"{event['text']} {event.get('excerpt', '')}")
        elif ev == "stray":
            books.stray(stream, event["values"])
        elif ev == "child":
            st = self.streams[stream]
            st.child_name, st.child_pid = event["i"], event["pid"]
            agent.children["child"] = event["pid"]
            books.sender(event["i"], stream, t)
        elif ev == "child_exit":
            life = books.senders.get(event["i"])
            if life is not None and life.end_kind is None:
                if agent.fate == "stopping" and event["why"] == "ended":
                    books.end_sender(event["i"], t, "stopped")
                else:
                    books.end_sender(event["i"], t, "died")
                    books.fail(f"{stream}: the child {event['i']} ended by itself: {event['why']}")
        elif ev == "host":
            cs = self.callers[stream]
            cs.host_pid = event["pid"]
            agent.children["host"] = event["pid"]
        elif ev == "call_fail":
            books.call_book(stream).failures.append((t, event["type"], event["phase"], event["error"]))
        elif ev == "calls":
            cs = self.callers[stream]
            stats = {k: event[k] for k in ("made", "ok", "failed", "wrong", "pending")}
            with books.lock:
                books.call_book(stream).stats[agent.name] = stats
            cs.pending, cs.lib_pending = event["pending"], event["lib_pending"]
        elif ev == "error":
            books.fail(f"{agent.name} reported an error: {event['error']}")

    def on_exit(self, agent: Agent, text: str) -> None:
        t = self.clock.now()
        if agent.role == "sender":
            self.ledger.end_sender(agent.name, t, "killed" if agent.fate == "killed" else "stopped")
        if agent.fate is None:
            if agent.role == "sender":
                self.ledger.end_sender(agent.name, t, "died")
            self.ledger.fail(f"{agent.name} exited without being asked to: {text}")
        elif agent.fate == "stopping" and text != "exited":
            self.ledger.note(f"{agent.name} did not exit cleanly when stopped: {text}")

    # ------------------------------------------------------------------------------------
    # Faults

    def plan_faults(self) -> None:
        pairs = [(spec.name, kind) for spec in STREAMS for kind in spec.faults]
        pairs += [(spec.name, kind) for spec in CALLS for kind in spec.faults]
        pairs.append(("mqtt", RESTART_BROKER))
        if self.o.only:
            pairs = [p for p in pairs if p[1] in self.o.only or f"{p[0]}:{p[1]}" in self.o.only]
        self.fault_pairs = [
            p for p in pairs if p[1] not in self.o.skip and f"{p[0]}:{p[1]}" not in self.o.skip
        ]
        self.ready_at = self.clock.now()
        self.faults_from = self.ready_at + 5.0
        self.warmup = self.ready_at + max(15.0, min(120.0, self.duration * 0.1))
        window = self.duration - self.faults_from - self.cooldown
        every = self.o.fault_every or min(4.0, window / (len(self.fault_pairs) + 2))
        self.fault_interval = max(0.5, every)

    @property
    def cooldown(self) -> float:
        return min(30.0, max(12.0, self.duration * 0.05))

    def fault_loop(self) -> None:
        order = list(self.fault_pairs)
        self.rng.shuffle(order)  # every kind once, then at random: a short run still sees them all
        next_at = self.faults_from
        count = 0
        while not self.stopping.is_set():
            if self.stopping.wait(max(0.0, next_at - self.clock.now())):
                break
            if self.clock.now() > self.duration - self.cooldown or not self.fault_pairs:
                break
            stream, kind = order[count] if count < len(order) else self.rng.choice(self.fault_pairs)
            count += 1
            try:
                self.inject(stream, kind)
            except Exception as error:  # noqa: BLE001 - a fault that could not be made is a finding
                self.ledger.fail(f"fault {kind} on {stream} failed: {type(error).__name__}: {error}")
            next_at += self.fault_interval
        self.faults_done.set()

    def down(self) -> float:
        return round(self.rng.uniform(0.1, 1.0), 2)

    def inject(self, stream: str, kind: str) -> None:
        t = self.clock.now()
        if kind == RESTART_BROKER:
            assert self.broker is not None
            down = self.down()
            for st in self.streams.values():
                if st.spec.channel == "mqtt" and st.receiver is not None:
                    self.ledger.brk(st.spec.name, t, kind, self.lives[st.receiver.name])
            self.ledger.fault(t, "mqtt", kind, f"down {down} s")
            self.broker.restart(down)
            return
        if kind in (KILL_HOST, KILL_CALLER):
            self.call_fault(self.callers[stream], kind, t)
            return
        st = self.streams[stream]
        if kind == KILL_SENDER:
            self.kill_sender(st, t)
        elif kind == KILL_RECEIVER:
            self.kill_receiver(st, t, graceful=False)
        elif kind == RESTART_RECEIVER:
            self.kill_receiver(st, t, graceful=True)
        elif kind == SLOW:
            ms = self.rng.randint(500, 3000)
            assert st.receiver is not None
            st.receiver.send({"cmd": "pause", "ms": ms})
            self.ledger.fault(t, stream, kind, f"{ms} ms")
        elif kind == GARBAGE:
            self.garbage_count += 1
            tag = f"soakbad{self.garbage_count}x"
            self.ledger.inject(tag, stream, t)  # (before writing: the report may come back first)
            if self.write_garbage(st, tag):
                self.ledger.fault(t, stream, kind, tag)
            else:
                self.ledger.uninject(tag)
        elif kind == TRUNCATE:
            assert st.sender is not None
            st.sender.send({"cmd": "truncate"})
            self.ledger.fault(t, stream, kind)

    def kill_sender(self, st: StreamState, t: float) -> None:
        if st.spec.channel == "stdio":
            if st.child_pid is None or st.child_name is None:
                return
            name, pid = st.child_name, st.child_pid
            self.ledger.end_sender(name, t, "killed")
            self.ledger.fault(t, st.spec.name, KILL_SENDER, f"{name} (pid {pid})")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return  # its parent starts the next child by itself
        agent = st.sender
        assert agent is not None
        self.ledger.fault(t, st.spec.name, KILL_SENDER, f"{agent.name} (pid {agent.pid})")
        self.ledger.end_sender(agent.name, t, "killed")
        agent.kill()
        agent.exited.wait(10)
        agent.reap()
        time.sleep(self.down())
        self.wait_ready([self.start_sender(st)])

    def kill_receiver(self, st: StreamState, t: float, graceful: bool) -> None:
        agent = st.receiver
        assert agent is not None
        life = self.lives[agent.name]
        kind = RESTART_RECEIVER if graceful else KILL_RECEIVER
        self.ledger.fault(t, st.spec.name, kind, f"{agent.name} (pid {agent.pid})")
        if st.spec.channel == "stdio" and st.child_name is not None:
            self.ledger.end_sender(st.child_name, t, "killed")  # (it dies with its parent)
        if graceful:
            if not agent.stop(STOP_TIMEOUT):
                self.ledger.fail(f"{agent.name} did not stop within {STOP_TIMEOUT:g} s when asked")
        else:
            agent.kill()
            agent.exited.wait(10)
        self.ledger.end_receiver(life, t, kind)
        self.ledger.brk(st.spec.name, t, kind, life)
        self.check_orphans(agent)
        agent.reap()
        time.sleep(self.down())
        self.wait_ready([self.start_receiver(st)])

    def call_fault(self, cs: CallerState, kind: str, t: float) -> None:
        book = self.ledger.call_book(cs.spec.name)
        if kind == KILL_HOST:
            if cs.host_pid is None:
                return
            pid, cs.host_pid = cs.host_pid, None
            book.host_kills.append(t)
            self.ledger.fault(t, cs.spec.name, kind, f"host pid {pid}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        agent = cs.agent
        assert agent is not None
        book.caller_kills.append(t)
        self.ledger.fault(t, cs.spec.name, kind, f"{agent.name} (pid {agent.pid})")
        agent.kill()
        agent.exited.wait(10)
        self.check_orphans(agent)
        agent.reap()
        time.sleep(self.down())
        self.wait_ready([self.start_caller(cs)])

    def check_orphans(self, agent: Agent) -> None:
        """A process we killed must not leave its children behind (they get SIGKILL when their
        parent dies: spawn's PR_SET_PDEATHSIG): look again 3 s later."""
        pids = dict(agent.children)

        def look() -> None:
            for what, pid in pids.items():
                if alive(pid):
                    self.ledger.fail(
                        f"{agent.name} was killed but its {what} (pid {pid}) is still running 3 s later"
                    )
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

        timer = threading.Timer(3.0, look)
        timer.daemon = True
        timer.start()

    def write_garbage(self, st: StreamState, tag: str) -> bool:
        """A malformed line from a raw writer of our own (stdio: the child writes it to fd 1)."""
        line = b'{"soak-garbage": ' + tag.encode() + b"}\n"
        channel = st.spec.channel
        if channel == "stdio":
            assert st.receiver is not None
            return st.receiver.send({"cmd": "garbage", "tag": tag})
        if channel == "tcp":
            assert st.port is not None
            with socket.create_connection(("127.0.0.1", st.port), timeout=5) as sock:
                sock.sendall(line)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):  # the listener's FIN says it read our line
                    pass
            return True
        if channel == "ws":
            from websockets.sync.client import connect as ws_connect

            with ws_connect(f"ws://127.0.0.1:{st.port}/soak", open_timeout=5) as ws:
                ws.send(line.decode().strip())
            return True
        if channel == "fifo":
            assert st.path is not None
            try:
                fd = os.open(st.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return False  # no reader at this moment
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            return True
        if channel == "file":
            assert st.path is not None
            fd = os.open(st.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            return True
        if channel == "mqtt":
            pub = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
            topic = f"soak/{st.spec.name}"
            args = [
                pub,
                "-h",
                "127.0.0.1",
                "-p",
                str(st.port),
                "-q",
                "1",
                "-t",
                topic,
                "-m",
                line.decode().strip(),
            ]
            return subprocess.run(args, env=self.env, timeout=10, capture_output=True).returncode == 0
        return False

    # ------------------------------------------------------------------------------------
    # Watching

    def sample_loop(self) -> None:
        while not self.stopping.wait(self.o.sample_every):
            self.sample()

    def processes(self) -> list[tuple[str, int, int | None]]:
        """(role, pid, pending calls) of everything alive that we started, and ourselves."""
        found: list[tuple[str, int, int | None]] = [("orchestrator [python]", os.getpid(), None)]
        if self.broker is not None and self.broker.pid is not None:
            found.append(("mosquitto", self.broker.pid, None))
        for st in self.streams.values():
            for agent in (st.sender, st.receiver):
                if agent is not None and not agent.exited.is_set():
                    found.append((f"{agent.key} [{agent.lang}]", agent.pid, None))
            if st.spec.channel == "stdio" and st.child_pid is not None:
                lang = st.spec.sender
                found.append((f"{st.spec.name}/child [{lang}]", st.child_pid, None))
        for cs in self.callers.values():
            agent = cs.agent
            if agent is not None and not agent.exited.is_set():
                found.append((f"{agent.key} [{agent.lang}]", agent.pid, cs.lib_pending))
            if cs.host_pid is not None:
                other = "node" if cs.spec.caller == "python" else "python"
                found.append((f"{cs.spec.name}/host [{other}]", cs.host_pid, None))
        return found

    def sample(self) -> None:
        t = self.clock.now()
        children = probe.children_by_parent()
        for key, pid, pending in self.processes():
            values = probe.sample(pid, children)
            if values is None:
                continue
            series = self.series.get((key, pid))
            if series is None:
                series = self.series[(key, pid)] = probe.Series(key, pid)
            series.t.append(t)
            for metric, value in values.items():
                series.values[metric].append(value)
            series.values["pending"].append(float(pending) if pending is not None else -1.0)

    def progress_line(self) -> str:
        t = self.clock.now()
        results = self.ledger.judge(t, final=False)
        sent = sum(r.sent for r in results.values())
        received = sum(r.received for r in results.values())
        lost = sum(r.lost for r in results.values())
        dup_ok = sum(sum(r.dup_explained.values()) for r in results.values())
        dup_bad = sum(r.dup_unexplained for r in results.values())
        made = sum(b.total("made") for b in self.ledger.calls.values())
        ok = sum(b.total("ok") for b in self.ledger.calls.values())
        failed = sum(b.total("failed") for b in self.ledger.calls.values())
        mine = self.series.get(("orchestrator [python]", os.getpid()))
        rss = (
            f"{mine.values['rss_mb'][-1]:.0f} MB, {mine.values['fds'][-1]:.0f} fds"
            if mine and mine.t
            else "-"
        )
        return (
            f"[{t:6.0f}s/{self.duration:.0f}s] sent {sent:,} received {received:,} lost {lost} "
            f"dup {dup_ok} explained / {dup_bad} unexplained | faults {len(self.ledger.faults)} | "
            f"calls {made:,} ok {ok:,} failed {failed} | problems {len(self.ledger.failures)} | "
            f"orchestrator {rss}"
        )

    # ------------------------------------------------------------------------------------
    # The run

    def run(self) -> int:
        self.say(
            f"soak: seed {self.o.seed}, {self.o.minutes:g} min, {self.o.rate:g} msg/s per stream, "
            f"tmp {self.tmp}"
        )
        try:
            self.start()
            self.plan_faults()
            self.say(
                f"[{self.clock.now():6.1f}s] {len(self.streams)} streams, {len(self.callers)} callers up; "
                "faults every "
                f"{self.fault_interval:.1f} s from {self.faults_from:.0f} s, {len(self.fault_pairs)} kinds"
            )
            threads = [
                threading.Thread(target=self.sample_loop, name="sampler", daemon=True),
                threading.Thread(target=self.fault_loop, name="faults", daemon=True),
            ]
            for thread in threads:
                thread.start()
            self.sample()
            self.main_loop()
            self.stopping.set()
            self.faults_done.wait(60)
            self.shutdown()
        finally:
            self.cleanup()
        return 0

    def main_loop(self) -> None:
        next_line = self.o.progress_every
        cycles = {name: self.rng.uniform(2, self.o.cycle_every) for name in self.streams}
        while True:
            t = self.clock.now()
            if t >= self.duration:
                return
            for name, at in cycles.items():
                st = self.streams[name]
                if t >= at and st.sender is not None and st.sender.ready.is_set():
                    st.sender.send({"cmd": "cycle"})  # close() and open again: a checkpoint
                    cycles[name] = t + self.rng.uniform(0.5, 1.5) * self.o.cycle_every
            if t >= next_line:
                self.say(self.progress_line())
                next_line += self.o.progress_every
            time.sleep(0.2)

    def shutdown(self) -> None:
        self.shutting_down = True
        self.say(f"[{self.clock.now():6.0f}s] stopping senders and callers, then draining")
        self.ended_at = self.clock.now()
        self.sample()  # (the last one while everything still runs)
        stoppers = []
        for st in self.streams.values():
            stoppers.append(st.sender if st.spec.channel != "stdio" else st.receiver)
        stoppers += [cs.agent for cs in self.callers.values()]
        for agent in stoppers:
            if agent is not None:
                agent.fate = agent.fate or "stopping"
                agent.send({"cmd": "stop"})
        for agent in stoppers:
            if agent is not None and not agent.exited.wait(STOP_TIMEOUT):
                self.ledger.fail(f"{agent.name} did not stop within {STOP_TIMEOUT:g} s when asked")
                agent.kill()
        self.drain()
        for st in self.streams.values():
            if st.spec.channel != "stdio" and st.receiver is not None:
                if not st.receiver.stop(STOP_TIMEOUT):
                    self.ledger.fail(f"{st.receiver.name} did not stop within {STOP_TIMEOUT:g} s when asked")

    def drain(self) -> None:
        """Waits until every receiver has all its senders promised, or nothing moves for 5 s."""
        deadline = time.monotonic() + 60
        last, still = -1, time.monotonic()
        while time.monotonic() < deadline:
            results = self.ledger.judge(self.clock.now() + self.ledger.WAIT, final=True)
            taken = sum(r.deliveries for r in results.values())
            if sum(r.lost for r in results.values()) == 0:
                return
            if taken != last:
                last, still = taken, time.monotonic()
            elif time.monotonic() - still > 5:
                return
            time.sleep(0.3)

    def cleanup(self) -> None:
        self.stopping.set()
        every = [st.sender for st in self.streams.values()] + [st.receiver for st in self.streams.values()]
        every += [cs.agent for cs in self.callers.values()]
        for agent in every:
            if agent is not None:
                if not agent.exited.is_set():
                    agent.fate = agent.fate or "stopping"
                    agent.kill()
                agent.reap()
        if self.broker is not None:
            self.broker.stop()
        time.sleep(0.5)  # (children that die with their parent need a moment)
        self.leftovers = [pid for pid in marked(self.run_id) if pid != os.getpid()]
        for pid in self.leftovers:
            self.ledger.fail(f"process {pid} ({cmdline(pid)}) was still running after the soak stopped")
            try:
                os.kill(pid, signal.SIGKILL)  # ours: it carries this run's mark
            except ProcessLookupError:
                pass
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp_removed = not self.tmp.exists()


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return "?"


def parse_args(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=2.0, help="how long to run (default 2)")
    parser.add_argument(
        "--out", type=Path, default=Path("soak/results"), help="where REPORT.md and soak.png go"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="the fault schedule's seed (default: random, printed)"
    )
    parser.add_argument("--rate", type=float, default=200, help="messages/s per stream (default 200)")
    parser.add_argument("--call-rate", type=float, default=100, help="quick calls/s per caller (default 100)")
    parser.add_argument(
        "--fault-every", type=float, default=None, help="seconds between faults (default: fit all kinds)"
    )
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds between /proc samples")
    parser.add_argument("--progress-every", type=float, default=10.0, help="seconds between progress lines")
    parser.add_argument(
        "--cycle-every", type=float, default=15.0, help="seconds between a sender's close+reopen"
    )
    parser.add_argument("--pad", type=int, default=32, help="bytes of padding per message")
    parser.add_argument(
        "--skip", action="append", default=[], help="a fault kind (or stream:kind) not to inject"
    )
    parser.add_argument(
        "--only", action="append", default=[], help="inject only these fault kinds (or stream:kind)"
    )
    parser.add_argument(
        "--inject-loss", action="store_true", help="self-test: drop one receipt; the run must fail"
    )
    parser.add_argument(
        "--inject-dup", action="store_true", help="self-test: repeat one receipt; the run must fail"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    return Options(
        minutes=args.minutes,
        out=args.out,
        seed=seed,
        rate=args.rate,
        call_rate=args.call_rate,
        fault_every=args.fault_every,
        sample_every=args.sample_every,
        progress_every=args.progress_every,
        cycle_every=args.cycle_every,
        pad=args.pad,
        skip=set(args.skip),
        only=set(args.only),
        inject_loss=args.inject_loss,
        inject_dup=args.inject_dup,
        argv=argv,
    )


def main(argv: list[str] | None = None) -> int:
    from .report import write_report

    options = parse_args(sys.argv[1:] if argv is None else argv)
    soak = Soak(options)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)  # (so that a CI timeout still cleans up)
    try:
        soak.run()
    except KeyboardInterrupt as error:
        soak.ledger.fail(f"the soak was interrupted ({error or 'SIGINT'}) before its end")
    except Exception as error:
        soak.ledger.fail(f"the soak itself failed: {type(error).__name__}: {error}")
        import traceback

        traceback.print_exc()
    return write_report(soak)
