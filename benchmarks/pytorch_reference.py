#!/usr/bin/python3
"""PyTorch side of the side-by-side benchmark (benchmarks/RESULTS.md).

Run with Debian's interpreter, which has python3-torch (1.13) and python3-torchvision (0.14):

    /usr/bin/python3 benchmarks/pytorch_reference.py --worker --threads 2      # JSON lines on stdin/stdout
    /usr/bin/python3 benchmarks/pytorch_reference.py --plan plan.json --out results.json --threads 2
    /usr/bin/python3 benchmarks/pytorch_reference.py load-predict --weights m.pth --image x.jpg --arch resnet50 ...

The .NET runner (``dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- compare``) starts
this script once in ``--worker`` mode and sends it JSON cases, one per line; each reply is one JSON line. For the
step benchmarks (training step, inference, GEMM) it ``open``s the same step on both sides (model construction and
``warmup`` >= 5 untimed steps), then alternates short rounds of timed ``steps`` between its own side and this one, so
that both sides see the same machine while the load of a shared machine drifts; ``close`` drops the step. The other
cases (data pipeline, end-to-end epoch, load + predict) run whole. The script does no statistics beyond collecting
raw per-step / per-pass times: the runner computes medians for both sides with the same code (``timed`` runs a step
benchmark in one go, for standalone use with ``--plan``: warm-up, then enough steps for about ``target_s`` seconds,
clamped to [min_iters, max_iters]).

Models are torchvision's own classes with ``num_classes`` outputs; training is forward + cross-entropy + backward +
Adam step on a fixed random batch; inference is eval mode under ``torch.no_grad()``. Threads: ``torch.set_num_threads``
(``--threads``, default 2) and one inter-op thread, like the .NET side.
"""

import argparse
import json
import math
import os
import sys
import time


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def setup_threads(threads):
    import torch
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (only allowed once, before any parallel work)


def build_model(arch, num_classes):
    import torchvision
    ctor = getattr(torchvision.models, arch)
    return ctor(num_classes=num_classes)


def timed_steps(step, case):
    """Warm-up then timed steps; returns (warm-up times, timed times) in seconds."""
    warm = []
    for _ in range(case["warmup"]):
        t = time.perf_counter()
        step()
        warm.append(time.perf_counter() - t)
    tail = sorted(warm[-3:])
    estimate = tail[len(tail) // 2]
    n = int(math.ceil(case["target_s"] / max(estimate, 1e-6)))
    n = max(case["min_iters"], min(case["max_iters"], n))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return warm, times


def make_model_step(case):
    """A training or inference step of torchvision's model on a fixed random batch: (step, phases list, images per step)."""
    import torch
    import torch.nn.functional as F
    torch.manual_seed(case.get("seed", 0))
    model = build_model(case["arch"], case["classes"])
    b, s = case["batch"], case["size"]
    x = torch.randn(b, 3, s, s)
    y = torch.randint(0, case["classes"], (b,), dtype=torch.int64)
    phases = []
    if case["step"] == "train":
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            opt.zero_grad()
            t3 = time.perf_counter()
            phases.append([t1 - t0, t2 - t1, t3 - t2])  # forward (incl. loss), backward, Adam step + zero_grad
            return loss.item()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                return model(x).sum().item()
    return step, phases, b


def make_gemm_step(case):
    """C = A·B of n×n fp32 matrices: 2n³ FLOP per step."""
    import torch
    n = case["n"]
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    out = torch.empty(n, n)

    def step():
        torch.mm(a, b, out=out)
    return step, [], 2.0 * n * n * n


STEP_FACTORIES = {"train": make_model_step, "infer": make_model_step, "gemm": make_gemm_step}


def run_timed(case):
    """Warm-up + timed steps in one go (standalone use: --plan)."""
    step, phases, items = STEP_FACTORIES[case["step"]](case)
    warm, times = timed_steps(step, case)
    result = {"warmup_s": warm, "times_s": times, "items_per_step": items}
    if phases:
        result["phases_s"] = phases[len(warm):]
    return result


# Interleaved measurement: the runner opens a step on both sides, runs their warm-ups, then alternates short rounds of
# timed steps between the two sides, so that both see the same machine (load drifts over seconds to minutes).
OPEN = {}


def run_open(case):
    """Builds the step and runs its warm-up steps; keeps it under case['handle'] for 'steps' calls."""
    step, phases, items = STEP_FACTORIES[case["step"]](case)
    warm = []
    for _ in range(case["warmup"]):
        t = time.perf_counter()
        step()
        warm.append(time.perf_counter() - t)
    del phases[:]
    OPEN[case["handle"]] = (step, phases)
    return {"warmup_s": warm, "items_per_step": items}


def run_steps(case):
    """case['n'] timed steps of an opened step (and their phases, for training)."""
    step, phases = OPEN[case["handle"]]
    times = []
    for _ in range(case["n"]):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    result = {"times_s": times}
    if phases:
        result["phases_s"] = list(phases)
        del phases[:]
    return result


def run_close(case):
    OPEN.pop(case["handle"], None)
    return {}


def image_transforms(size, augment):
    import torchvision.transforms as T
    norm = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    if augment:
        return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    # torchvision's ImageNet eval recipe, scaled like our "torchvision" preset: resize shorter side to size/0.875.
    return T.Compose([T.Resize(int(round(size / 0.875))), T.CenterCrop(size), T.ToTensor(), norm])


def run_pipeline(case):
    """Decode + resize (+ augment) + to-tensor + normalise of a whole folder through ImageFolder + DataLoader."""
    import torch
    import torchvision
    dataset = torchvision.datasets.ImageFolder(case["folder"], transform=image_transforms(case["size"], case.get("augment", False)))
    passes = []
    count = 0
    for i in range(case["warmup_passes"] + case["passes"]):
        t = time.perf_counter()
        loader = torch.utils.data.DataLoader(dataset, batch_size=case["batch"], shuffle=False, num_workers=case["workers"])
        count = 0
        for images, labels in loader:
            count += images.shape[0]
        elapsed = time.perf_counter() - t
        if i >= case["warmup_passes"]:
            passes.append(elapsed)
    return {"times_s": passes, "items_per_step": count}


def run_e2e(case):
    """One training epoch from a JPEG folder: ImageFolder + DataLoader(workers) + model init + Adam loop."""
    import torch
    import torch.nn.functional as F
    import torchvision
    runs = []
    images = 0
    for i in range(case["warmup_runs"] + case["runs"]):
        t = time.perf_counter()
        torch.manual_seed(case.get("seed", 0))
        dataset = torchvision.datasets.ImageFolder(case["folder"], transform=image_transforms(case["size"], False))
        loader = torch.utils.data.DataLoader(dataset, batch_size=case["batch"], shuffle=True, num_workers=case["workers"])
        model = build_model(case["arch"], len(dataset.classes))
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=case.get("lr", 1e-3))
        images = 0
        for epoch in range(case["epochs"]):
            for x, y in loader:
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.item()
                loss.backward()
                opt.step()
                images += x.shape[0]
        elapsed = time.perf_counter() - t
        if i >= case["warmup_runs"]:
            runs.append(elapsed)
        del model, opt, loader
    return {"times_s": runs, "items_per_step": images}


def run_save_model(case):
    import torch
    torch.manual_seed(case.get("seed", 0))
    model = build_model(case["arch"], case["classes"])
    torch.save(model.state_dict(), case["path"])
    return {"path": case["path"], "bytes": os.path.getsize(case["path"])}


def run_load_predict(case):
    """In-process (torch already imported): build the model, load its saved weights, predict one image."""
    import torch
    from PIL import Image
    loads, predicts = [], []
    for i in range(case["warmup_runs"] + case["runs"]):
        t0 = time.perf_counter()
        model = build_model(case["arch"], case["classes"])
        model.load_state_dict(torch.load(case["weights"]))
        model.eval()
        t1 = time.perf_counter()
        transform = image_transforms(case["size"], False)
        with torch.no_grad():
            x = transform(Image.open(case["image"]).convert("RGB")).unsqueeze(0)
            int(torch.softmax(model(x), 1)[0].argmax())
        t2 = time.perf_counter()
        if i >= case["warmup_runs"]:
            loads.append(t1 - t0)
            predicts.append(t2 - t1)
        del model
    return {"times_s": [a + b for a, b in zip(loads, predicts)], "load_s": loads, "predict_s": predicts}


def run_flops(case):
    """Multiply-accumulates of Conv2d and Linear layers for one image (the convention of torchvision's GFLOPS column)."""
    import torch
    model = build_model(case["arch"], case["classes"]).eval()
    macs = [0]

    def hook(module, inputs, output):
        w = module.weight
        if isinstance(module, torch.nn.Conv2d):
            macs[0] += w.numel() * output.shape[2] * output.shape[3]
        else:
            macs[0] += w.numel()
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, case["size"], case["size"]))
    for h in handles:
        h.remove()
    return {"macs": macs[0]}


def versions():
    import torch
    import torchvision
    import PIL
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }
    cfg = torch.__config__.show()
    for line in cfg.splitlines():
        line = line.strip()
        if line.startswith("- Intel(R) MKL-DNN") or line.startswith("- Intel(R) oneDNN"):
            info["onednn"] = line[2:]
        if line.startswith("- CPU capability usage"):
            info["cpu_capability"] = line.split(":", 1)[1].strip()
    for key in ("BLAS_INFO", "LAPACK_INFO"):
        i = cfg.find(key + "=")
        if i >= 0:
            info[key.lower()] = cfg[i + len(key) + 1:].split(",", 1)[0]
    return info


HANDLERS = {
    "timed": run_timed,
    "open": run_open,
    "steps": run_steps,
    "close": run_close,
    "pipeline": run_pipeline,
    "e2e": run_e2e,
    "save_model": run_save_model,
    "load_predict": run_load_predict,
    "flops": run_flops,
    "versions": lambda case: versions(),
}


def run_case(case):
    import gc
    t = time.perf_counter()
    try:
        result = HANDLERS[case["kind"]](case)
        result["ok"] = True
    except Exception as e:  # report, never kill the worker: the runner marks the row
        import traceback
        traceback.print_exc(file=sys.stderr)
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    gc.collect()
    result["id"] = case.get("id")
    result["case_wall_s"] = time.perf_counter() - t
    return result


def load_predict(args):
    """Fresh-process cold start: imports, model construction, weights load, one prediction on one image."""
    t0 = time.perf_counter()
    import torch
    import torchvision  # noqa: F401  (what a user's script imports)
    from PIL import Image
    setup_threads(args.threads)
    t_import = time.perf_counter()
    model = build_model(args.arch, args.classes)
    model.load_state_dict(torch.load(args.weights))
    model.eval()
    t_load = time.perf_counter()
    transform = image_transforms(args.size, False)
    with torch.no_grad():
        x = transform(Image.open(args.image).convert("RGB")).unsqueeze(0)
        probs = torch.softmax(model(x), 1)[0]
    top = int(probs.argmax())
    t_pred = time.perf_counter()
    print(json.dumps({"ok": True, "import_s": t_import - t0, "load_s": t_load - t_import, "predict_s": t_pred - t_load,
                      "load_predict_s": t_pred - t_import, "top": top}), flush=True)


def train_eval(args):
    """From scratch on a photo folder: ImageFolder + DataLoader(2 workers), RandomResizedCrop(scale=(min_scale, 1)) +
    RandomHorizontalFlip for training, Resize(size/0.875) + CenterCrop for validation, Adam, validation accuracy after
    every epoch. Prints one JSON line: per-epoch accuracies, best, final and the wall time from the first import."""
    t0 = time.perf_counter()
    import torch
    import torch.nn.functional as F
    import torchvision
    import torchvision.transforms as T
    setup_threads(args.threads)
    torch.manual_seed(args.seed)
    norm = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    train_tf = T.Compose([T.RandomResizedCrop(args.size, scale=(args.min_scale, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    train = torchvision.datasets.ImageFolder(args.train, transform=train_tf)
    val = torchvision.datasets.ImageFolder(args.val, transform=image_transforms(args.size, False))
    train_loader = torch.utils.data.DataLoader(train, batch_size=args.batch, shuffle=True, num_workers=2)
    val_loader = torch.utils.data.DataLoader(val, batch_size=args.batch, shuffle=False, num_workers=2)
    model = build_model(args.arch, len(train.classes))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    accuracies = []
    for epoch in range(args.epochs):
        model.train()
        for x, y in train_loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += int((model(x).argmax(1) == y).sum())
        accuracies.append(correct / len(val))
    print(json.dumps({"ok": True, "accuracies": accuracies, "best": max(accuracies), "final": accuracies[-1],
                      "seconds": time.perf_counter() - t0}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="", help="'load-predict' for a cold-start run, 'train-eval' for a from-scratch accuracy run; omit otherwise")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (intra-op); inter-op is 1")
    p.add_argument("--worker", action="store_true", help="read JSON cases from stdin, write JSON results to stdout")
    p.add_argument("--plan", help="JSON file with a list of cases")
    p.add_argument("--out", help="where --plan writes its JSON list of results")
    p.add_argument("--weights"), p.add_argument("--image"), p.add_argument("--arch", default="resnet50")
    p.add_argument("--size", type=int, default=224), p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train"), p.add_argument("--val"), p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=32), p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-scale", type=float, default=0.08), p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    if args.mode == "train-eval":
        train_eval(args)
        return
    if args.mode == "load-predict":
        load_predict(args)
        return
    setup_threads(args.threads)
    if args.worker:
        print(json.dumps({"ready": True, **versions()}), flush=True)
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            case = json.loads(line)
            if case.get("kind") == "exit":
                break
            print(json.dumps(run_case(case)), flush=True)
        return
    if args.plan:
        with open(args.plan) as f:
            cases = json.load(f)
        results = [run_case(c) for c in cases]
        text = json.dumps(results, indent=1)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
        else:
            print(text)
        return
    p.print_help()


if __name__ == "__main__":
    main()
