"""Train HSTL on CASIA-B, resumable across short runs.

    python3 model/training/train.py --data CASIA_B_DIR --output runs/compact --minutes 120

Every run resumes from the newest checkpoint in `OUTPUT/checkpoints/`, trains until the iteration
target or the time budget, and saves a checkpoint in OpenGait's format
(`{'model', 'optimizer', 'scheduler', 'iteration'}`, file `hstl-NNNNN.pt`), which `hstl export` reads.
The defaults are the CPU recipe of the compact variant (README.md); `--variant casia-b --optimizer adam
--lr 1e-4 --batch-k 8 --iterations 90000 --milestones 70000 --warmup 0` is the published recipe
(Wang et al., ICCV 2023, and OpenGait's configuration). Subjects named by `--validation-subjects` are left out of training and scored
(rank-1, NM/BG/CL) every `--validate-every` iterations, so checkpoints are chosen without the test subjects.
"""

import argparse
import json
import math
import signal
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from augment import WalkAugmentation, parse_kinds  # noqa: E402
from casia_b import TripletBatches, load_sequences, parse_subjects  # noqa: E402
from evaluate import embed_walks, rank1_table  # noqa: E402
from hstl_net import HSTL, VARIANTS  # noqa: E402
from losses import cross_entropy_loss, triplet_loss  # noqa: E402

CHECKPOINT_NAME = re.compile(r"^hstl-(\d{5,})\.pt$")



def flush_denormals(model):
    """Sets the weights that weight decay has shrunk below float32's smallest normal to zero; returns
    how many. oneDNN's float convolutions slow down several times on denormal weights (6 % of the
    compact network's weights were, by iteration 4,249: forward 12.6 s instead of 1.6 s per batch),
    and the Rust runtime would read them as well. Values that small are zero to the network."""
    tiny = torch.finfo(torch.float32).tiny
    flushed = 0
    with torch.no_grad():
        for parameter in model.parameters():
            denormal = (parameter.abs() < tiny) & (parameter != 0)
            # Counted on the device and read once: a read per parameter would stall a GPU ~100 times
            # an iteration.
            flushed = flushed + denormal.sum()
            parameter.masked_fill_(denormal, 0.0)
    return int(flushed)

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="CASIA-B silhouettes: casia-b_SSS.npz files or SSS/COND/VVV/*.pkl")
    parser.add_argument("--output", required=True, help="run directory (checkpoints/, log.jsonl)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="compact")
    parser.add_argument("--subjects", default="001-074")
    parser.add_argument("--validation-subjects", default="065-074", help="left out of training, scored as it goes ('' for none)")
    parser.add_argument("--validate-every", type=int, default=1000)
    parser.add_argument("--validation-frames", type=int, default=None, help="frames per validation walk (default: all)")
    parser.add_argument("--views", default=None, help="comma-separated views to train on (default: all)")
    parser.add_argument("--iterations", type=int, default=12_000)
    parser.add_argument("--schedule", choices=("steps", "cosine"), default="steps", help="steps: ÷10 at each milestone; cosine: from --lr down to --lr x --final-lr-ratio")
    parser.add_argument("--milestones", default="9000,11000", help="iterations where the learning rate drops 10x (steps only)")
    parser.add_argument("--final-lr-ratio", type=float, default=0.01, help="cosine only: the last iteration's rate over --lr")
    parser.add_argument("--augment", default="none", help="whole-walk augmentation: flip,affine,erase,corrupt, 'all' or 'none' (augment.py)")
    parser.add_argument("--init", default=None, help="weights to start from when there is no checkpoint to resume (a checkpoint or a {'model'} file)")
    parser.add_argument("--average-from", type=int, default=None, help="keep the mean of the weights of every iteration from here on, saved beside each checkpoint")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD only")
    parser.add_argument("--warmup", type=int, default=100, help="iterations of linear learning-rate warm-up")
    parser.add_argument("--batch-p", type=int, default=8, help="subjects per batch")
    parser.add_argument("--batch-k", type=int, default=4, help="walks per subject per batch")
    parser.add_argument("--frames", type=int, default=30, help="consecutive frames per clip")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=None, help="stop and save after this much wall time")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    return parser.parse_args(argv)


def latest_checkpoint(directory):
    found = []
    for path in Path(directory).glob("hstl-*.pt"):
        match = CHECKPOINT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def save_checkpoint(directory, model, optimizer, scheduler, iteration):
    """Written to a temporary name and renamed, so an interrupted save never hides the previous one."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"hstl-{iteration:05d}.pt"
    partial = path.with_suffix(".pt.partial")
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "iteration": iteration,
    }
    torch.save(state, partial)
    partial.replace(path)
    return path


def averaged_path(checkpoint):
    return checkpoint.with_name(checkpoint.stem + "-averaged.pt")


def save_averaged(checkpoint, averaged, count, iteration):
    """The running mean of the weights, as a file `hstl export` reads like any checkpoint."""
    path = averaged_path(checkpoint)
    partial = path.with_suffix(".pt.partial")
    torch.save({"model": averaged, "averaged_iterations": count, "iteration": iteration}, partial)
    partial.replace(path)


def fold_into_average(averaged, count, model):
    """Adds the model's current weights to the running mean of `count` earlier ones."""
    with torch.no_grad():
        for name, value in model.state_dict().items():
            value = value.detach().to("cpu", torch.float32)
            if name not in averaged:
                averaged[name] = value.clone()
            else:
                averaged[name] += (value - averaged[name]) / (count + 1)
    return count + 1


def load_initial_weights(model, path):
    """Starts from other weights: every tensor whose name and shape match; a classifier for another
    number of training subjects is left as initialised. Returns the names left."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ValueError(f"{path}: not this network's weights (unknown tensors {unknown[:3]})")
    matching = {name: value for name, value in state.items() if own[name].shape == value.shape}
    model.load_state_dict(matching, strict=False)
    return sorted(set(own) - set(matching))


def make_scheduler(args, optimizer):
    if args.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda iteration: cosine_factor(args, iteration))
    milestones = [int(m) for m in args.milestones.split(",") if m]
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


def cosine_factor(args, iteration):
    """Linear warm-up, then half a cosine from 1 down to `--final-lr-ratio` at the last iteration."""
    if iteration < args.warmup:
        return (iteration + 1) / args.warmup
    progress = min(1.0, (iteration - args.warmup) / max(1, args.iterations - args.warmup))
    return args.final_lr_ratio + (1.0 - args.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(args, model):
    if args.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)


def warm_up(optimizer, args, iteration):
    """Linear warm-up to the base rate over the first `--warmup` iterations; the milestones come after.
    The cosine schedule has its warm-up built in."""
    if args.schedule == "cosine":
        return
    if iteration < args.warmup:
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (iteration + 1) / args.warmup
    elif iteration == args.warmup and args.warmup > 0:
        for group in optimizer.param_groups:
            group["lr"] = args.lr


def validate(model, sequences, device, frames):
    """Rank-1 NM/BG/CL of the held-out training subjects, in percent."""
    model.eval()
    table = rank1_table(sequences, embed_walks(model, sequences, device, frames))
    model.train()
    means = {name: table[name]["mean"] for name in ("NM", "BG", "CL")}
    return {name: None if mean is None else round(mean, 2) for name, mean in means.items()}


class StopRequest:
    """SIGTERM or SIGINT while training: the iteration finishes, a checkpoint is saved, the run stops
    (a service manager or a closing terminal ends runs this way). The previous handlers come back on
    exit."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for number in (signal.SIGTERM, signal.SIGINT):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, _frame):
        self.signal = signal.Signals(number).name

    def __exit__(self, *_):
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def train(args):
    started = time.monotonic()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    held_out = parse_subjects(args.validation_subjects) if args.validation_subjects else []
    subjects = [s for s in parse_subjects(args.subjects) if s not in held_out]
    views = args.views.split(",") if args.views else None
    sequences = load_sequences(args.data, subjects, views)
    validation = load_sequences(args.data, held_out, views) if held_out else []
    output = Path(args.output)
    checkpoints = output / "checkpoints"

    model = HSTL(classes=len(subjects), variant=VARIANTS[args.variant])
    optimizer = make_optimizer(args, model)
    scheduler = make_scheduler(args, optimizer)
    iteration = 0
    averaged, averaged_count = {}, 0
    resume = latest_checkpoint(checkpoints)
    if resume is None and args.init:
        left = load_initial_weights(model, args.init)
        print(f"starting from {args.init}" + (f" (initialised afresh: {', '.join(left)})" if left else ""), flush=True)
    if resume is not None:
        state = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        iteration = state["iteration"]
        if averaged_path(resume).exists():
            saved_average = torch.load(averaged_path(resume), map_location="cpu", weights_only=True)
            averaged, averaged_count = saved_average["model"], saved_average["averaged_iterations"]
        flushed = flush_denormals(model)
        print(f"resumed from {resume} at iteration {iteration} ({flushed} denormal weights set to 0)", flush=True)
    model.to(device).train()
    for group_state in optimizer.state.values():
        for key, value in group_state.items():
            if torch.is_tensor(value) and key != "step":
                group_state[key] = value.to(device)

    # A fresh stream per resumed run: deterministic for a given (seed, starting iteration).
    batches = TripletBatches(sequences, args.batch_p, args.batch_k, args.frames, np.random.default_rng([args.seed, iteration]))
    augment = WalkAugmentation(parse_kinds(args.augment), np.random.default_rng([args.seed, iteration, 1]))
    mixed_precision = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=mixed_precision)
    output.mkdir(parents=True, exist_ok=True)
    log = open(output / "log.jsonl", "a")
    print(
        f"{args.variant}: {len(sequences)} walks of {len(subjects)} subjects ({len(validation)} held out); batch {args.batch_p}x{args.batch_k}x{args.frames} frames, "
        f"augmented: {', '.join(sorted(augment.kinds)) or 'no'} "
        f"on {device}{' with fp16' if mixed_precision else ''}",
        flush=True,
    )

    window = []
    saved = None
    with StopRequest() as stop:
        while iteration < args.iterations:
            if stop.signal is not None:
                print(f"{stop.signal}: stopping at iteration {iteration}", flush=True)
                break
            if args.minutes is not None and time.monotonic() - started > args.minutes * 60:
                print(f"time budget of {args.minutes} min reached", flush=True)
                break
            warm_up(optimizer, args, iteration)
            clips, labels = batches.next()
            sils = torch.from_numpy(augment(clips)).to(device, non_blocking=True)
            labels = torch.from_numpy(labels).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=mixed_precision):
                embeddings, _, logits = model(sils)
            triplet, active = triplet_loss(embeddings, labels, args.margin)
            identity, accuracy = cross_entropy_loss(logits, labels)
            loss = triplet + identity
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at iteration {iteration}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            flush_denormals(model)
            scheduler.step()
            iteration += 1
            if args.average_from is not None and iteration > args.average_from:
                averaged_count = fold_into_average(averaged, averaged_count, model)
            window.append((loss.item(), triplet.item(), identity.item(), accuracy, active))

            if iteration % args.log_every == 0 or iteration == args.iterations:
                mean = np.mean(window, axis=0)
                record = {
                    "iteration": iteration,
                    "loss": round(float(mean[0]), 5),
                    "triplet": round(float(mean[1]), 5),
                    "cross_entropy": round(float(mean[2]), 5),
                    "accuracy": round(float(mean[3]), 4),
                    "active_triplets": round(float(mean[4]), 4),
                    "lr": scheduler.get_last_lr()[0],
                    "elapsed_s": round(time.monotonic() - started, 1),
                }
                if validation and iteration % args.validate_every == 0:
                    record["validation"] = validate(model, validation, device, args.validation_frames)
                    record["elapsed_s"] = round(time.monotonic() - started, 1)
                print(json.dumps(record), flush=True)
                log.write(json.dumps(record) + "\n")
                log.flush()
                window.clear()
            if iteration % args.save_every == 0:
                saved = save_checkpoint(checkpoints, model, optimizer, scheduler, iteration)
                if averaged_count:
                    save_averaged(saved, averaged, averaged_count, iteration)

    if saved is None or not saved.name.endswith(f"{iteration:05d}.pt"):
        saved = save_checkpoint(checkpoints, model, optimizer, scheduler, iteration)
        if averaged_count:
            save_averaged(saved, averaged, averaged_count, iteration)
    log.close()
    print(f"checkpoint {saved} at iteration {iteration}", flush=True)
    return saved


if __name__ == "__main__":
    train(parse_args())
