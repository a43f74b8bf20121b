"""``python -m microray.raylet``: start a raylet.

The zygote is started first, before this process creates a thread or any gRPC
object, so the fork server never inherits gRPC state. Spawned, it imports what
workers need itself; forked (``start_method="fork"``), it already has it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def main(argv: list[str] | None = None, start_method: str = "spawn") -> None:
    parser = argparse.ArgumentParser(prog="microray-raylet")
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--config-file", required=True, help="the node's config.json (0600; holds secrets)")
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--head", action="store_true")
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    from microray import proctitle, session

    proctitle.set_role("raylet", argv)

    session.hold(args.session_dir)
    cfg = session.read_node_config(args.config_file)
    logs = os.path.join(args.session_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    from microray.process import become_subreaper
    from microray.raylet import zygote as zygote_mod

    # workers are re-parented to us when the zygote's middle process exits: we reap them
    become_subreaper()
    # the cluster token, from the session folder (0600): the zygote gets it through its
    # pipe (or memory, forked) and hands it to each worker; never on a command line
    token = session.read_token(args.session_dir)
    zygote = zygote_mod.start(
        {"session_dir": args.session_dir, "node_id": args.node_id, "config_json": cfg.to_json(), "token": token},
        start_method,
        os.path.join(logs, f"zygote-{args.node_id[:8]}.err"),
    )
    # a write to a zygote that just died must fail with EPIPE, not kill the node
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    from microray import log as log_setup
    import structlog

    log_setup.configure(level=cfg.log_level, log_file=os.path.join(logs, f"raylet-{args.node_id[:8]}.log"))
    structlog.contextvars.bind_contextvars(component="raylet", node_id=args.node_id)
    from microray.process import report_start_failure
    from microray.raylet import server

    try:
        code = server.run(args, zygote, args.ready_fd)
    except Exception as exc:  # noqa: BLE001 -- report the cause to whoever started us
        structlog.get_logger("microray.raylet").error("raylet_failed", error=f"{type(exc).__name__}: {exc}")
        zygote.kill()
        report_start_failure(args.ready_fd, exc)
        sys.exit(1)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
