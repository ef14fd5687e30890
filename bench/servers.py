"""The servers a `make bench` run measures on: refused beside other services of the stack, started (or reused)
before the measures, and what it started stopped at the end."""
from __future__ import annotations

from shopflow.config import get_settings

BENCH_GROUPS = ("postgres", "mariadb", "kafka", "spark")  # the servers the measures run on (ensure_servers)


def other_services(settings) -> list[str]:
    """Services of this checkout's stack that the bench does not use but that would run inside its measures, on the
    same cores: Airflow's scheduler starts the DAGs' Spark jobs on their schedules (by default the stream every 5
    minutes, the replication every 15), eventgen produces events, the dashboard queries MySQL. Jobs run by hand
    (`make stream`) too: they also hold the cluster's cores."""
    from shopflow.stack import manager, processes, supervisor

    services = [s.name for s in manager.running_services(settings) if s.group not in BENCH_GROUPS]
    jobs = [f"the job {processes.command_line(pid)!r} (pid {pid})"
            for pid in processes.jobs_run_by_hand(supervisor.daemon_pid(settings))]
    return services + jobs


def refuse_if_busy(args) -> list[str]:
    """Stops the bench before it starts anything when other services of the stack run, unless --allow-busy;
    returns those services (empty when none run)."""
    busy = other_services(get_settings())
    if busy and args.allow_busy:
        print(f"bench: measuring while {', '.join(busy)} {'runs' if len(busy) == 1 else 'run'} (--allow-busy); "
              "the results name them", flush=True)
    elif busy:
        raise SystemExit(
            f"bench: {', '.join(busy)} of this checkout's stack {'is' if len(busy) == 1 else 'are'} running. "
            "They share this machine's cores with the measures (Airflow also starts the DAGs' Spark jobs on their "
            "schedules), so the numbers would not be comparable. Stop them first: `make down` stops the whole "
            "stack, and the bench starts the servers it needs. Or measure anyway with "
            "`make bench BENCH_ARGS=--allow-busy` (the results then name them).")
    return busy


def ensure_servers(args, started: list[str]) -> None:
    """Start (or reuse) the local servers the chosen measures need; a port held by something else fails here.
    Appends the services it starts to `started` as they start, so that `stop_servers` stops them at the bench's end,
    after a Ctrl-C while they started too (what it found running stays)."""
    from shopflow.stack import manager

    groups = ["postgres", "mariadb"]
    if {"ours", "naive", "marts", "streaming"} - args.skip:
        groups.append("spark")
    if "streaming" not in args.skip:
        groups.append("kafka")
    try:
        manager.ensure(get_settings(), groups, started)
    except manager.StackError as error:
        raise SystemExit(f"bench: cannot start the servers it needs: {error}") from None


def daemon_running() -> bool:
    from shopflow.stack import supervisor

    return supervisor.is_running(get_settings())


def stop_servers(started: list[str], daemon_was_running: bool, keep: bool) -> None:
    """What `ensure_servers` started, as `make test` does: a bench left its servers running, and a later `make test`
    or `make up` of another checkout then found the ports taken."""
    from shopflow.stack import manager, supervisor

    if not started and (daemon_was_running or not daemon_running()):  # started nothing, not even supervisord
        return
    if keep:
        print("bench: --keep: the servers it started still run (`make down` stops them)", flush=True)
        return
    settings = get_settings()
    if not daemon_was_running and (others := sorted({s.name for s in manager.running_services(settings)}
                                                    - set(started))):
        # a `make up` (or `make test`) elsewhere meanwhile joined the bench's supervisord: stopping it would stop theirs
        print(f"bench: leaving the stack running: {', '.join(others)} started meanwhile by someone else, and they may "
              "use what the bench started (`make down` stops it all)", flush=True)
        return
    if started:
        print(f"bench: stopping the servers it started: {', '.join(started)}", flush=True)
    if daemon_was_running:
        manager.stop(settings, started)
    else:
        supervisor.shutdown(settings)
