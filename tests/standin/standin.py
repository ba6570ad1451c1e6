"""Stand-in inference servers for the runtime test (`make test-runtime`).

Each one starts the way its upstream server does, as far as the container is concerned: the
same flags (unknown ones are refused, as newer SD.Next does), the same listen address and
socket options, the same data and model directories. It answers HTTP at once but generates an
image only after it has read the checkpoint, as SD.Next and A1111 do.

    standin.py sdnext  ARGS...   SD.Next's launch.py (both image layouts)
    standin.py a1111   ARGS...   A1111's webui.py
    standin.py comfyui           SaladCloud's comfyui-api (HOST, PORT from the environment)

GET /standin/seen reports what the server can see: the model files in each directory it
reads, the loaded checkpoint, whether it hashed it, and its uid.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import socket
import sys
import time

PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()

EXTENSIONS = {
    "checkpoint": (".safetensors", ".ckpt"),
    "lora": (".safetensors", ".ckpt", ".pt"),
    "vae": (".safetensors", ".ckpt", ".pt"),
    "embedding": (".safetensors", ".pt", ".bin"),
    "controlnet": (".safetensors", ".pth", ".pt", ".ckpt", ".bin"),
}


def log(*parts):
    print("standin:", *parts, file=sys.stderr, flush=True)


class Server:
    def __init__(self, dirs, ckpt, hashing):
        self.dirs = dirs
        self.ckpt = ckpt
        self.hashing = hashing
        self.loaded = None
        self.hashed = False
        self.lock = asyncio.Lock()

    def listing(self):
        seen = {}
        for kind, path in self.dirs.items():
            try:
                names = sorted(os.listdir(path))  # follows symlinks, as the servers do
            except OSError:
                names = []
            seen[kind] = [n for n in names if n.endswith(EXTENSIONS[kind])]
        return seen

    def load(self):
        path = self.ckpt
        if path is None:
            found = self.listing()["checkpoint"]
            if not found:
                raise RuntimeError("no checkpoint in " + self.dirs["checkpoint"])
            path = os.path.join(self.dirs["checkpoint"], found[0])
        digest = hashlib.sha256()
        with open(path, "rb") as f:  # the real ones read the whole file into memory
            while chunk := f.read(1 << 20):
                if self.hashing:
                    digest.update(chunk)
        time.sleep(float(os.environ.get("STANDIN_LOAD_SECONDS", "2")))
        self.loaded = path
        self.hashed = self.hashing
        log("loaded", path)

    async def handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            status, payload = await self.route(method, target.split("?")[0], body)
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def route(self, method, path, body):
        if path == "/standin/seen":
            return 200, {
                "models": self.listing(),
                "loaded": self.loaded,
                "hashed": self.hashed,
                "uid": os.getuid(),
            }
        if method == "POST" and path == "/sdapi/v1/txt2img":
            async with self.lock:
                if self.loaded is None:
                    try:
                        await asyncio.get_running_loop().run_in_executor(None, self.load)
                    except (OSError, RuntimeError) as e:
                        return 500, {"error": "model not loaded: " + str(e)}
            json.loads(body or b"{}")
            return 200, {"images": [PNG_1X1], "parameters": {}, "info": "{}"}
        if method == "GET" and path in (
            "/sdapi/v1/progress",
            "/sdapi/v1/memory",
            "/sdapi/v1/status",
            "/internal/ping",
        ):
            return 200, {}
        return 404, {"detail": "Not Found"}


async def serve_asyncio(server, host, port):
    # asyncio.start_server sets IPV6_V6ONLY on an IPv6 socket, as uvicorn's does: `[::]`
    # does not accept IPv4.
    srv = await asyncio.start_server(server.handle, host, port)
    log("listening on", [s.getsockname() for s in srv.sockets])
    async with srv:
        await srv.serve_forever()


async def serve_dual_stack(server, port):
    # Node's listen('::') accepts IPv4 too.
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    srv = await asyncio.start_server(server.handle, sock=sock)
    log("listening on", sock.getsockname())
    async with srv:
        await srv.serve_forever()


def truthy(name):
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def sdnext(argv):
    p = argparse.ArgumentParser(prog="launch.py")
    p.add_argument("--data-dir", default=os.environ.get("SD_DATADIR"))
    p.add_argument("--models-dir", default=os.environ.get("SD_MODELSDIR"))
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--server-name")
    p.add_argument("--listen", action="store_true")
    p.add_argument("--backend", choices=["diffusers", "original"], default="diffusers")
    p.add_argument("--ckpt")
    p.add_argument("--vae")
    p.add_argument("--api-only", action="store_true")
    p.add_argument("--no-hashing", action="store_true", default=truthy("SD_NOHASHING"))
    p.add_argument("--log")
    for flag in ("--quick", "--use-cuda", "--skip-all", "--debug", "--docs", "--api-log",
                 "--lowvram", "--medvram", "--test"):
        p.add_argument(flag, action="store_true")
    a = p.parse_args(argv)  # newer SD.Next exits on unknown flags (installer.parse_args)
    data = a.data_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    models = a.models_dir or os.path.join(data, "models")
    if not os.path.isabs(models):
        models = os.path.join(data, models)
    # SD.Next writes its config and creates its folders at start.
    os.makedirs(os.path.join(data, "outputs"), exist_ok=True)
    with open(os.path.join(data, "config.json"), "w") as f:
        json.dump({"sd_backend": a.backend}, f)
    control = "control/controlnet" if a.backend == "diffusers" else "ControlNet"
    dirs = {
        "checkpoint": os.path.join(models, "Stable-diffusion"),
        "lora": os.path.join(models, "Lora"),
        "vae": os.path.join(models, "VAE"),
        "embedding": os.path.join(models, "embeddings"),
        "controlnet": os.path.join(models, control),
    }
    if a.api_only:  # modules/server.py: --api-only ignores --server-name
        host = "0.0.0.0" if a.listen else "127.0.0.1"
    elif a.server_name:
        host = a.server_name.strip("[]")  # gradio strips the brackets
    else:
        host = "0.0.0.0" if a.listen else "127.0.0.1"
    log("sdnext", "uid", os.getuid(), "data", data, "models", models, "backend", a.backend)
    asyncio.run(serve_asyncio(Server(dirs, a.ckpt, not a.no_hashing), host, a.port))


def a1111(argv):
    p = argparse.ArgumentParser(prog="webui.py")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--listen", action="store_true")
    p.add_argument("--ckpt")
    p.add_argument("--ckpt-dir")
    for flag in ("--xformers", "--api", "--no-download-sd-model", "--no-hashing",
                 "--lowvram", "--medvram", "--skip-torch-cuda-test",
                 "--enable-insecure-extension-access"):
        p.add_argument(flag, action="store_true")
    a = p.parse_args(argv)
    root = os.environ.get("ROOT", os.getcwd())
    dirs = {
        "checkpoint": a.ckpt_dir or os.path.join(root, "models", "Stable-diffusion"),
        "lora": os.path.join(root, "models", "Lora"),
        "vae": os.path.join(root, "models", "VAE"),
        "embedding": os.path.join(root, "embeddings"),
        "controlnet": os.path.join(root, "models", "ControlNet"),
    }
    server = Server(dirs, a.ckpt, not a.no_hashing)
    if a.ckpt is None and not server.listing()["checkpoint"] and not a.no_download_sd_model:
        # modules/sd_models.py list_models(): downloads v1-5-pruned-emaonly from Hugging Face.
        log("no checkpoint found: downloading SD 1.5 (4 GB) from Hugging Face")
        sys.exit("standin: A1111 would download SD 1.5 here; the image bakes no checkpoint it sees")
    host = "0.0.0.0" if a.listen else "127.0.0.1"
    log("a1111", "root", root)
    asyncio.run(serve_asyncio(server, host, a.port))


def comfyui(argv):
    """comfyui-api 1.19 as the container sees it (src/config.ts, src/server.ts): HOST/PORT,
    the warm-up workflow from WARMUP_PROMPT_FILE (it must exist when the wrapper starts; its
    CheckpointLoaderSimple names the checkpoint the warm-up loads), /health 200 only once warm
    (500 before), /ready 503 until warm, and the synchronous POST /prompt."""
    if argv:
        sys.exit("standin: comfyui-api takes no arguments")
    home = os.environ.get("COMFY_HOME", "/opt/ComfyUI")
    models = os.path.join(home, "models")
    dirs = {
        "checkpoint": os.path.join(models, "checkpoints"),
        "lora": os.path.join(models, "loras"),
        "vae": os.path.join(models, "vae"),
        "embedding": os.path.join(models, "embeddings"),
        "controlnet": os.path.join(models, "controlnet"),
    }
    warmup = None
    ckpt = None
    warmup_file = os.environ.get("WARMUP_PROMPT_FILE")
    if warmup_file:
        if not os.path.exists(warmup_file):
            sys.exit("standin: AssertionError: Warmup prompt file not found")
        with open(warmup_file) as f:
            warmup = json.load(f)
        for node in warmup.values():
            if node.get("class_type") == "CheckpointLoaderSimple":
                ckpt = os.path.join(dirs["checkpoint"], node["inputs"]["ckpt_name"])
                break
    server = Server(dirs, ckpt, False)
    state = {"warm": False}

    def run_warmup():
        if warmup is not None:
            server.load()
            log("warm-up workflow ran")
        state["warm"] = True

    async def prompt(body):
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "body must be JSON", "location": "body"}
        graph = req.get("prompt")
        if not isinstance(graph, dict):
            return 400, {"error": "prompt is required", "location": "prompt"}
        if not any("filename_prefix" in (n.get("inputs") or {}) for n in graph.values()):
            return 400, {
                "error": 'Prompt must contain a node with a "filename_prefix" input, such as "SaveImage"',
                "location": "prompt",
            }
        for node_id, n in graph.items():
            if n.get("class_type") == "CheckpointLoaderSimple":
                name = n["inputs"].get("ckpt_name")
                if name not in server.listing()["checkpoint"]:
                    return 400, {"error": f"ckpt_name {name!r} not in checkpoints",
                                 "location": f"prompt.{node_id}.inputs.ckpt_name"}
        pid = req.get("id") or "standin-%d" % time.time_ns()
        out = dict(req, id=pid, images=[PNG_1X1], filenames=[pid + "_00001_.png"],
                   stats={"total_time": 1})
        return 200, out

    async def warm_then_serve():
        port = int(os.environ.get("PORT", "3000"))
        host = os.environ.get("HOST", "::")
        if host not in ("::", "[::]"):
            sys.exit("standin: comfyui-api listens on :: only in this stand-in")
        original = server.route

        async def route(method, path, body):
            if method == "GET" and path == "/health":
                if not state["warm"]:
                    return 500, {"version": "1.19.2", "status": "not healthy"}
                return 200, {"version": "1.19.2", "status": "healthy"}
            if method == "GET" and path == "/ready":
                if not state["warm"]:
                    return 503, {"version": "1.19.2", "status": "not ready"}
                return 200, {"version": "1.19.2", "status": "ready"}
            if method == "POST" and path == "/prompt":
                return await prompt(body)
            return await original(method, path, body)

        server.route = route
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, run_warmup)
        await serve_dual_stack(server, port)

    asyncio.run(warm_then_serve())


if __name__ == "__main__":
    kinds = {"sdnext": sdnext, "a1111": a1111, "comfyui": comfyui}
    if len(sys.argv) < 2 or sys.argv[1] not in kinds:
        sys.exit("usage: standin.py sdnext|a1111|comfyui ARGS...")
    kinds[sys.argv[1]](sys.argv[2:])
