"""``serve MODEL`` (a shell's foreground service), ``deploy`` / ``deploy --stop`` and ``deployments`` (both doors).

MODEL is a registered model's name, ``models:/NAME/VERSION``, a run id or a path (``serving.model_source``).
"""

from __future__ import annotations

import os
import sys

from jupyter_avml.cli.table import NOTEBOOK, SHELL, Verb, add_verbs, arg

MODEL_ARG = arg("model", metavar="MODEL",
                help="a registered model name, models:/NAME/VERSION, a run id (or a 6+ character prefix) or a path "
                     "(model.pt, a run or outputs folder, an MLflow model or ONNX export folder)")
DEVICE_ARG = arg("--device", default="auto", metavar="DEVICE", help="cpu, cuda, cuda:1... (default: auto)")
HOST_ARG = arg("--host", default="127.0.0.1", metavar="HOST",
               help="the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")

LIMIT_ARGS = (
    arg("--max-body-bytes", type=int, metavar="N", help="largest request body (default 32 MiB)"),
    arg("--max-image-pixels", type=int, metavar="N", help="largest image, width x height (default 40 million)"),
    arg("--max-images-per-request", type=int, metavar="N", help="images in one JSON request (default 64)"),
    arg("--max-concurrent-requests", type=int, metavar="N", help="requests in flight; more get 503 (default 64)"),
    arg("--request-timeout", type=int, dest="request_timeout_s", metavar="S",
        help="the longest a request may take in seconds, queueing included (default 60)"),
    arg("--body-timeout", type=int, dest="body_timeout_s", metavar="S",
        help="the longest reading a request body may take in seconds (default 30; 408 after it)"),
    arg("--max-batch-size", type=int, metavar="N", help="images predicted together (default 8)"),
    arg("--max-batch-wait-ms", type=int, metavar="MS",
        help="how long a batch waits for requests still arriving, in milliseconds (default 10)"),
)
LIMIT_NAMES = ("max_body_bytes", "max_image_pixels", "max_images_per_request", "max_concurrent_requests",
               "request_timeout_s", "body_timeout_s", "max_batch_size")


def _limits(args) -> dict:
    limits = {name: getattr(args, name) for name in LIMIT_NAMES if getattr(args, name, None) is not None}
    if getattr(args, "max_batch_wait_ms", None) is not None:
        limits["max_batch_wait_s"] = args.max_batch_wait_ms / 1000
    return limits


# -- serve ---------------------------------------------------------------------------------------------------
def serve_verb(args, door=None) -> None:
    import logging

    from jupyter_avml.serving.client import curl_snippet
    from jupyter_avml.serving.limits import ServiceLimits
    from jupyter_avml.serving.model_source import ServedModel
    from jupyter_avml.serving.server import serve

    limits = ServiceLimits(**_limits(args))
    key = args.key or os.environ.get("AVML_SERVICE_KEY") or None
    model = ServedModel(args.model, workspace=args.workspace, device=args.device,
                        cache_size=limits.predictor_cache_size)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    def ready(url: str) -> None:
        print(f"serving {args.model} ({model.task}, {len(model.labels)} labels) at {url}", file=sys.stderr)
        print(f"  POST {url}/score (image bytes) or /invocations (MLflow JSON); GET {url}/health, {url}/metadata",
              file=sys.stderr)
        print(f"  {curl_snippet(url + '/score', key, 'IMAGE.png')}", file=sys.stderr)
        if not key and args.host not in ("127.0.0.1", "localhost", "::1"):
            print("  warning: no --key, and the service listens beyond this machine", file=sys.stderr)
        print("  Ctrl-C stops it", file=sys.stderr, flush=True)

    serve(model, host=args.host, port=args.port, key=key, limits=limits, on_ready=ready)


# -- deploy, deployments -------------------------------------------------------------------------------------
def deploy_verb(args, door=None):
    from jupyter_avml.errors import ConfigError
    from jupyter_avml.serving.deployments import deploy, stop_deployment

    if args.stop:
        return stop_deployment(args.model or args.name, args.workspace)
    if not args.model:
        raise ConfigError("name the model to deploy (a registered model, models:/NAME/VERSION, a run id or a path), "
                          "or --stop NAME", field="model")
    if args.key and args.no_key:
        raise ConfigError("give --key or --no-key, not both", field="--key")
    key = False if args.no_key else (args.key or True)
    return deploy(args.model, name=args.name, host=args.host, port=args.port, key=key, workspace=args.workspace,
                  device=args.device, limits=_limits(args), test_image=args.image)


def deploy_text(deployment, args, door) -> None:
    if args.stop:
        print(f"deployment {deployment.name}: {deployment.status}")
        return
    tested = deployment.tested or {}
    print(f"deployment {deployment.name}: serving {deployment.model} at {deployment.url}")
    print(f"  key: {deployment.key}" if deployment.key else "  key: none (anyone who can reach it may call it)")
    print(f"  score: POST {deployment.score_url} (image bytes, Content-Type: application/octet-stream)")
    print(f"  stop: {getattr(door, 'command', 'avml')} deploy --stop {deployment.name}; log: "
          f"{deployment.folder}/service.log")
    print(f"request (tested just now on {tested.get('image')}):")
    print("  " + deployment.curl(args.image or "IMAGE.png"))
    print("\n".join("  " + line for line in deployment.snippet(args.image or "IMAGE.png").splitlines()))
    print(f"answer: {_short(tested.get('prediction'))}")


def deploy_display(deployment, args, door) -> None:
    """The notebook's form: the same text, and the deployment in the variable ``--var`` names (its ``url``,
    ``score_url``, ``key``, ``snippet()``)."""
    if getattr(args, "var", None):
        door.bind(args.var, deployment)
    deploy_text(deployment, args, door)


def _short(value, limit: int = 300) -> str:
    import json

    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def deployments_verb(args, door=None):
    from jupyter_avml.serving.deployments import list_deployments

    return list_deployments(args.workspace)


def deployments_text(deployments, args, door) -> None:
    if not deployments:
        print(f"no deployments ({getattr(door, 'command', 'avml')} deploy MODEL starts one)")
        return
    print(f"{'name':24} {'status':9} {'url':28} model")
    for item in deployments:
        print(f"{item.name:24} {item.status:9} {item.url or '-':28} {item.model}")
        if item.error and item.status == "failed":
            print(f"    {item.error}")


VERBS = (
    Verb("serve", "serve a model over HTTP in the foreground (Ctrl-C stops it)", serve_verb,
         description="Serve MODEL as a web service: POST /score takes the raw bytes of an image (Content-Type: "
                     "application/octet-stream) and answers the prediction in the spec's format; POST /invocations "
                     "takes MLflow's JSON inputs too; GET /health and /metadata. Settings such as "
                     "box_score_thresh may be given per request as query parameters. Concurrent requests are "
                     "predicted in micro-batches.",
         args=(MODEL_ARG, HOST_ARG, arg("--port", type=int, default=5000, metavar="PORT",
                                        help="the port (default 5000; 0 picks a free one)"),
               arg("--key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' (default: $AVML_SERVICE_KEY, else no key)"),
               DEVICE_ARG, *LIMIT_ARGS),
         text=lambda result, args, door: print("the service stopped", file=sys.stderr),
         doors=frozenset({SHELL}),
         only_because="it holds the terminal until Ctrl-C; in a notebook, %avml deploy serves in the background"),
    Verb("deploy", "serve a model in the background (survives kernel restarts); --stop NAME ends it", deploy_verb,
         description="Start a background service for MODEL, wait until it answers, send it one real request and "
                     "print its URL, its key and that request (curl and Python). The service outlives the "
                     "notebook kernel or terminal; `deployments` lists them, `deploy --stop NAME` stops one.",
         args=(arg("model", nargs="?", metavar="MODEL", help=MODEL_ARG.help + "; with --stop: the deployment"),
               arg("--name", default=None, metavar="NAME",
                   help="the deployment's name (default: the registered model's name, else from MODEL)"),
               arg("--stop", action="store_true", help="stop the deployment NAME (or the only one serving)"),
               HOST_ARG, arg("--port", type=int, default=0, metavar="PORT", help="the port (default: a free one)"),
               arg("--key", default=None, metavar="KEY", help="the bearer key (default: a new random key)"),
               arg("--no-key", action="store_true", help="serve without a key"),
               arg("--image", default=None, metavar="IMAGE", help="the image of the test request (default: a "
                                                                  "generated one)"),
               arg("--var", default=None, metavar="VAR", doors={NOTEBOOK},
                   help="put the deployment (url, score_url, key, snippet()) in the Python variable VAR"),
               DEVICE_ARG, *LIMIT_ARGS),
         text=deploy_text, display=deploy_display,
         json=lambda deployment, args: {**deployment.to_dict(), "key": deployment.key}),
    Verb("deployments", "the deployments of the workspace: name, status, URL, model", deployments_verb,
         text=deployments_text, json=lambda items, args: [item.to_dict() for item in items]),
)


def register(subparsers) -> None:
    """Add these verbs to an ``avml`` subparsers (as ``cli/main.py`` does)."""
    add_verbs(subparsers, VERBS, SHELL, {})
