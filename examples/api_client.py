"""Drive Atelier from code with the official LangGraph SDK: create a thread, stream a creation, download the GLB,
and come back to the same thread later.

    atelier serve                                   # in another terminal (http://127.0.0.1:2024)
    python examples/api_client.py "a brass owl automaton"
    python examples/api_client.py --thread <id printed above> "find the brass owl I made"    # tomorrow
    python examples/api_client.py --review "a glass jellyfish lamp"                           # pause to edit the prompt

Who you are: the X-Atelier-User header (--user), or a bearer token (--token) when the server sets ATELIER_API_KEYS.
Everything the graph makes is in the thread state; files are fetched from GET /assets/{sha256}.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from pathlib import Path

import httpx
from langgraph_sdk import get_client


async def main() -> int:
    parser = argparse.ArgumentParser(description="Atelier through langgraph-sdk")
    parser.add_argument("request", help='what to make or find, e.g. "a brass owl automaton"')
    parser.add_argument("--url", default="http://127.0.0.1:2024")
    parser.add_argument("--user", default="local", help="sent as X-Atelier-User")
    parser.add_argument("--token", help="bearer token (servers with ATELIER_API_KEYS)")
    parser.add_argument("--thread", help="continue this thread (default: a new one)")
    parser.add_argument("--review", action="store_true", help="pause after the enhanced prompt and ask to accept/edit it")
    parser.add_argument("--no-enhance", action="store_true", help="skip the prompt rewrite")
    parser.add_argument("--out", default="out", help="where to save the image and the model")
    args = parser.parse_args()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {"X-Atelier-User": args.user}
    client = get_client(url=args.url, api_key=None, headers=headers)

    # 1. A thread per conversation. It belongs to the caller (metadata.user_id is stamped by the server).
    thread_id = args.thread or (await client.threads.create(metadata={"app": "example"}))["thread_id"]
    configurable = {"review_prompt": args.review, "enhance": not args.no_enhance}

    # 2. Run the request and stream the steps (custom events) and state updates; resume if the graph pauses.
    payload: dict = {"input": {"messages": [{"role": "user", "content": args.request}]}}
    while True:
        paused = None
        async for part in client.runs.stream(thread_id, "atelier", config={"configurable": configurable},
                                             stream_mode=["updates", "custom"], **payload):
            if part.event == "custom":
                event = part.data
                if event.get("event") == "step_start":
                    print(f"→ {event['tool']} …")
                elif event.get("event") == "progress" and event.get("message"):
                    print(f"    {event['message']}")
                elif event.get("event") == "step_end":
                    print(f"✓ {event['tool']} ({event.get('backend') or '-'}, {event['seconds']:.2f}s)")
            elif part.event == "updates" and "__interrupt__" in part.data:
                paused = part.data["__interrupt__"][0]["value"]
            elif part.event == "error":
                print(f"error: {part.data}", file=sys.stderr)
                return 1
        if paused is None:
            break
        print(f"\nEnhanced prompt: {paused['enhanced_prompt']}")
        edited = input("Enter to accept, or type a new prompt: ").strip() if sys.stdin.isatty() else ""
        payload = {"command": {"resume": {"prompt": edited} if edited else {"action": "accept"}}}

    # 3. Read back the result and download the files the creation holds.
    state = (await client.threads.get_state(thread_id))["values"]
    print("\n" + state["messages"][-1]["content"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=120) as http:
        for kind, suffix in (("image", ".png"), ("model", ".glb")):
            asset = state.get(kind)
            if not asset:
                continue
            response = await http.get(f"/assets/{asset['sha256']}")
            response.raise_for_status()
            assert hashlib.sha256(response.content).hexdigest() == asset["sha256"]
            path = out / f"{state['creation_id']}{Path(asset['rel_path']).suffix or suffix}"
            path.write_bytes(response.content)
            print(f"saved {kind}: {path} ({len(response.content)} bytes)")

    # 4. The thread keeps its history: every step is a checkpoint you can read (or branch from).
    history = await client.threads.get_history(thread_id, limit=100)
    print(f"\nthread {thread_id}: {len(history)} checkpoints; continue it with --thread {thread_id}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
