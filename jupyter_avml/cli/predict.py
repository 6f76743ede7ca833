"""``predict MODEL IMAGES... [--json]`` and ``score MODEL INPUT.jsonl -o OUT.jsonl``: offline predictions."""

from __future__ import annotations

import sys

from jupyter_avml.cli.serve import DEVICE_ARG, MODEL_ARG
from jupyter_avml.cli.table import SHELL, Verb, add_verbs, arg

SETTING_ARG = arg("--set", dest="settings", action="append", default=[], metavar="SETTING=VALUE",
                  help="an inference setting (box_score_thresh=0.5, valid_crop_size=256...); repeatable")


def predict_verb(args, door=None) -> list[dict]:
    from jupyter_avml.serving.offline import parse_settings, predict_files

    return predict_files(args.model, list(args.images), settings=parse_settings(args.settings),
                         workspace=args.workspace, device=args.device)


def predict_text(results, args, door) -> None:
    for result in results:
        name = result.get("filename")
        if "probs" in result:
            ranked = sorted(zip(result["labels"], result["probs"], strict=True), key=lambda pair: -pair[1])[:3]
            print(f"{name}: " + ", ".join(f"{label} {prob:.3f}" for label, prob in ranked))
        else:
            boxes = result.get("boxes", [])
            print(f"{name}: {len(boxes)} object(s)")
            for item in boxes:
                box = item["box"]
                extra = f" ({len(item['polygon'])} polygon part(s))" if "polygon" in item else ""
                print(f"  {item['label']} {item['score']:.3f} [{box['topX']:.3f}, {box['topY']:.3f}, "
                      f"{box['bottomX']:.3f}, {box['bottomY']:.3f}]{extra}")


def score_verb(args, door=None):
    from jupyter_avml.serving.offline import parse_settings, score_jsonl

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if getattr(args, "json", False):
            return
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="scoring", unit="image", file=sys.stderr, dynamic_ncols=True)
            bar.update(done)
        else:
            bar.update(done - bar.n)

    try:
        return score_jsonl(args.model, args.input, args.output, settings=parse_settings(args.settings),
                           workspace=args.workspace, device=args.device, batch_size=args.batch_size,
                           progress=progress)
    finally:
        if bar is not None:
            bar.close()


def score_text(summary, args, door) -> None:
    resumed = f" ({summary.resumed} from an interrupted score)" if summary.resumed else ""
    print(f"{summary.output}: {summary.lines} line(s), {summary.scored + summary.resumed} scored{resumed}, "
          f"{summary.failed} failed")
    for error in summary.errors[:10]:
        print(f"  {error}")
    if len(summary.errors) > 10:
        print(f"  ... and {len(summary.errors) - 10} more (each has an \"error\" field in the output)")


VERBS = (
    Verb("predict", "predict image files with a model (one line per image, or --json)", predict_verb,
         description="Load MODEL and predict each image: the top classes with their probabilities, or the "
                     "objects found. --json prints the spec's inference format.",
         args=(MODEL_ARG, arg("images", nargs="+", metavar="IMAGE", help="image files"), SETTING_ARG, DEVICE_ARG),
         text=predict_text, json=lambda results, args: results),
    Verb("score", "score a JSONL file of images into a JSONL file of predictions", score_verb,
         description="Each line of INPUT has image_url (as in training data) or image (base64); each line of OUT "
                     "has the input's fields, its line number and the prediction (or an error). An interrupted "
                     "score resumes where it stopped. Exit status 1 when a line could not be scored.",
         args=(MODEL_ARG, arg("input", metavar="INPUT.jsonl", help="the images to score"),
               arg("-o", "--output", required=True, metavar="OUT.jsonl", help="where the predictions go"),
               arg("--batch-size", type=int, default=16, metavar="N", help="images predicted together (default 16)"),
               SETTING_ARG, DEVICE_ARG),
         text=score_text, json=lambda summary, args: summary.to_dict(),
         exit_status=lambda summary, args: 1 if summary.failed else 0,
         failure=lambda summary, args: f"{summary.failed} line(s) could not be scored (see {summary.output})"),
)


def register(subparsers) -> None:
    add_verbs(subparsers, VERBS, SHELL, {})
