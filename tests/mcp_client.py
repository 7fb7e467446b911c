"""An MCP client for the end-to-end tests of `ringfence mcp`, on the official Python SDK (`mcp`).

Usage: python mcp_client.py SCENARIO CONFIG_JSON. CONFIG_JSON holds `server` (the argv that
starts the server), `env` (its environment) and the scenario's own values. Each result is printed
as a line `@@name JSON`, for the Rust test to check. The client runs on the host: what it reports
about processes (`/proc`) is the host's view.
"""

import json
import os
import sys
import time

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError


def report(name, value):
    print("@@" + name + " " + json.dumps(value), flush=True)


def host_pids_with_arg(arg):
    """Host processes (not zombies) with an argument exactly `arg`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if arg.encode() in args and state not in "ZX":
            found.append(int(entry))
    return found


async def run(session, arguments, **kw):
    """A run_command call, as plain data; a protocol error is reported, not raised."""
    try:
        r = await session.call_tool("run_command", arguments, **kw)
    except MCPError as e:
        return {"protocol_error": {"code": e.error.code, "message": e.error.message}}
    text = "".join(getattr(c, "text", "") for c in r.content)
    return {"is_error": bool(r.is_error), "result": r.structured_content, "text": text}


async def tour(session, cfg):
    tools = await session.list_tools()
    report("tools", [{"name": t.name, "schema": t.input_schema} for t in tools.tools])
    report("ok", await run(session, {"command": "echo hello; echo oops >&2"}))
    report("exit3", await run(session, {"argv": ["sh", "-c", "exit 3"]}))
    report("stdin", await run(session, {"command": "tr a-z A-Z", "stdin": "piped input"}))
    report("cwd", await run(session, {"command": "pwd", "cwd": "sub"}))
    report("cwd_escape", await run(session, {"command": "pwd", "cwd": "../"}))
    started = time.monotonic()
    timed = await run(session, {"command": "sleep 30", "timeout_s": 1})
    timed["client_seconds"] = time.monotonic() - started
    report("timeout", timed)
    report("big", await run(session, {"command": "head -c 200000 /dev/zero | tr '\\0' x; echo END"}))
    policy = await session.call_tool("sandbox_policy", {})
    report("policy", "".join(getattr(c, "text", "") for c in policy.content))


async def network(session, cfg):
    allowed, denied = cfg["allowed"], cfg["denied"]
    fetch = "curl -fsS --max-time 10 http://{}/{}"
    report("allowed", await run(session, {"command": fetch.format(allowed, cfg["marker"])}))
    report("denied", await run(session, {"command": fetch.format(denied, cfg["marker"])}))
    widen = {}
    for key, value in [("allow_host", denied), ("network", "open"), ("profile", "agent:claude"),
                       ("env", {"HTTP_PROXY": ""}), ("write", ["/"]), ("config", "/dev/null")]:
        widen[key] = await run(session, {"command": fetch.format(denied, cfg["marker"]), key: value})
    report("widen_args", widen)
    # What the agent can write: the workspace's config, which may only narrow; the user's config
    # is outside every writable root.
    project = "printf '[network]\\nallow = [\"%s\"]\\n' > .ringfence.toml" % denied
    user = "mkdir -p ~/.config/ringfence && printf '[network]\\nallow = [\"%s\"]\\n' > ~/.config/ringfence/config.toml" % denied
    report("widen_project", await run(session, {"command": project}))
    report("widen_user", await run(session, {"command": user}))
    report("denied_again", await run(session, {"command": fetch.format(denied, cfg["marker"])}))


async def cancel(session, cfg):
    marker = cfg["marker"]
    seen = []

    async def progress(value, total, message):
        seen.append({"progress": value, "message": message, "running": host_pids_with_arg(marker)})
        if len(seen) == 1:
            scope.cancel()

    started = time.monotonic()
    with anyio.CancelScope() as scope:
        await run(session, {"argv": ["sleep", marker]}, progress_callback=progress)
    report("progress", seen)
    gone_after = None
    while time.monotonic() - started < 30:
        if not host_pids_with_arg(marker):
            gone_after = time.monotonic() - started
            break
        await anyio.sleep(0.05)
    report("gone_after", gone_after)
    report("still_serving", await run(session, {"command": "echo alive"}))


async def disconnect(session, cfg):
    marker = cfg["marker"]
    seen = []

    async def progress(value, total, message):
        seen.append(host_pids_with_arg(marker))
        report("running", seen[0])
        # The client goes away mid-command, without a word.
        os._exit(0)

    await run(session, {"argv": ["sleep", marker]}, progress_callback=progress)


async def refusals(session, cfg):
    if cfg["memory"]:
        report("memory", await run(session, {"argv": ["python3", "-c", "b = bytearray(300 << 20)"]}))
        report("small", await run(session, {"argv": ["python3", "-c", "b = bytearray(8 << 20); print(len(b))"]}))
    report("envrc", await run(session, {"command": "mkdir -p sub && echo 'echo planted' > sub/.envrc"}))


SCENARIOS = {"tour": tour, "network": network, "cancel": cancel, "disconnect": disconnect, "refusals": refusals}


async def main():
    scenario, cfg = SCENARIOS[sys.argv[1]], json.loads(sys.argv[2])
    server = StdioServerParameters(command=cfg["server"][0], args=cfg["server"][1:], env=cfg["env"])
    # The server's stderr goes to a file of its own: a server that outlived this client would
    # otherwise hold the client's stderr open.
    with open(cfg["server_log"], "w") as errlog:
        await serve(scenario, cfg, server, errlog)


async def serve(scenario, cfg, server, errlog):
    async with stdio_client(server, errlog=errlog) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            report("init", {"name": init.server_info.name, "instructions": init.instructions,
                            "tools": init.capabilities.tools is not None})
            await scenario(session, cfg)


anyio.run(main)
