"""The PyTorch reference for `npm run bench:train` and the GPU bundle's check: the same CapsNet and training step.

Usage: python3 scripts/bench_train_torch.py CONFIG_JSON BATCH STEPS THREADS [--device cpu|cuda]

--device cuda (the GPU bundle, bench/gpu-bundle/run.sh) runs on the first CUDA GPU; every timing then ends with
torch.cuda.synchronize(), and THREADS only sets the CPU threads of the host side. Without CUDA it exits 3 with one
line on stderr saying why.

CONFIG_JSON is the project's CapsNetConfig (packages/core/src/config.ts) as JSON. The model mirrors
packages/capsnet/src/model/capsnet.ts op for op (conv1 + ReLU, PrimaryCaps conv + squash, u_hat = W_ij u_i with W
shared by all examples, `routing.iterations` of routing by agreement (the config's `routing.algorithm` must be
"dynamic", the paper's: the only one written here), the decoder masked by the label, margin loss + 0.0005 x summed squared error, Adam with
the same hyper-parameters), in PyTorch's own NCHW layout. Inputs are random images and cycling labels, as in the
TypeScript bench. Prints one JSON line: {"torch": version, "threads": n, "step_s": [...], "step_cpu_s": [...] (user + system
seconds of all threads), "forward_s": [...],
"loss": float, "peak_rss_mb": float, "device": "cpu" or the GPU's name}. The timings exclude one untimed warm-up of each.
"""

import json
import resource
import sys
import time

import torch
import torch.nn.functional as F


def squash(s, eps, dim=-1):
    sq = (s * s).sum(dim, keepdim=True)
    return sq / (1 + sq) / torch.sqrt(sq + eps) * s


def routing_iterations(c):
    """Iterations of routing by agreement (procedure 1 of the paper) from the config's `routing` entry."""
    routing = c.get("routing") or {}
    if routing.get("algorithm") != "dynamic":
        sys.exit(f"bench_train_torch.py: routing algorithm {routing.get('algorithm')!r} is not written in PyTorch here; "
                 "bench the paper's (dynamic) routing or add it to this script")
    return int(routing["iterations"])


class CapsNet(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        conv1_h = c["inputHeight"] - c["conv1Kernel"] + 1
        conv1_w = c["inputWidth"] - c["conv1Kernel"] + 1
        prim_h = (conv1_h - c["primaryKernel"]) // c["primaryStride"] + 1
        prim_w = (conv1_w - c["primaryKernel"]) // c["primaryStride"] + 1
        self.num_primary = prim_h * prim_w * c["primaryMaps"]
        self.conv1 = torch.nn.Conv2d(c["inputChannels"], c["conv1Filters"], c["conv1Kernel"])
        self.primary = torch.nn.Conv2d(c["conv1Filters"], c["primaryMaps"] * c["primaryDim"], c["primaryKernel"],
                                       stride=c["primaryStride"])
        k = c["numClasses"] * c["digitDim"]
        self.W = torch.nn.Parameter(0.01 * torch.randn(self.num_primary, c["primaryDim"], k))
        widths = [k, *c["decoderHidden"], c["inputHeight"] * c["inputWidth"] * c["inputChannels"]]
        self.decoder = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(widths, widths[1:]))

    def forward(self, x, labels, with_lengths=False):
        """The training loss (margin + weighted reconstruction); with_lengths: (loss, capsule lengths [N, classes])."""
        c = self.c
        n = x.shape[0]
        eps = c["squashEpsilon"]
        h = F.relu(self.conv1(x))
        p = self.primary(h)  # [N, maps*dim, H, W]
        # Same capsule order as the NHWC model: i = (y * w + x) * maps + map, pose d innermost.
        p = p.permute(0, 2, 3, 1).reshape(n, self.num_primary, c["primaryDim"])
        u = squash(p, eps)
        # u_hat[n, i, :] = u[n, i, :] . W[i]: one batched matmul over i.
        u_hat = torch.bmm(u.transpose(0, 1), self.W).transpose(0, 1)
        u_hat = u_hat.reshape(n, self.num_primary, c["numClasses"], c["digitDim"])
        b = torch.zeros(n, self.num_primary, c["numClasses"], device=x.device)
        iterations = routing_iterations(c)
        for r in range(iterations):
            coupling = torch.softmax(b, dim=-1)
            s = (coupling.unsqueeze(-1) * u_hat).sum(1)
            v = squash(s, eps)
            if r + 1 < iterations:
                b = b + (u_hat * v.unsqueeze(1)).sum(-1)
        lengths = torch.sqrt((v * v).sum(-1) + eps)
        h = (v * labels.unsqueeze(-1)).reshape(n, -1)
        for i, layer in enumerate(self.decoder):
            h = layer(h)
            h = torch.sigmoid(h) if i + 1 == len(self.decoder) else F.relu(h)
        present = labels * F.relu(c["mPlus"] - lengths) ** 2
        absent = (1 - labels) * c["lambda"] * F.relu(lengths - c["mMinus"]) ** 2
        margin = (present + absent).sum(-1).mean()
        recon = ((h - x.reshape(n, -1)) ** 2).sum(-1).mean() * c["reconstructionWeight"]
        return (margin + recon, lengths) if with_lengths else margin + recon


USAGE = "usage: bench_train_torch.py CONFIG_JSON BATCH STEPS THREADS [--device cpu|cuda]"


def main():
    args = sys.argv[1:]
    device_name = "cpu"
    if "--device" in args:
        at = args.index("--device")
        if at + 1 >= len(args) or args[at + 1] not in ("cpu", "cuda"):
            sys.exit(f"--device takes cpu or cuda; {USAGE}")
        device_name = args[at + 1]
        del args[at:at + 2]
    if len(args) != 4:
        sys.exit(USAGE)
    config = json.loads(args[0])
    batch, steps, threads = int(args[1]), int(args[2]), int(args[3])
    if device_name == "cuda" and not torch.cuda.is_available():
        print(f"torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda}; "
              "check the driver and CUDA_VISIBLE_DEVICES)", file=sys.stderr)
        sys.exit(3)
    device = torch.device(device_name)
    sync = torch.cuda.synchronize if device_name == "cuda" else (lambda: None)
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = CapsNet(config).to(device)
    # Same Adam as train/adam.ts (epsilon 1e-7 as in tf.train.adam; the learning-rate decay costs nothing here).
    opt = torch.optim.Adam(model.parameters(), lr=config["learningRate"], betas=(0.9, 0.999), eps=1e-7)
    x = torch.rand(batch, config["inputChannels"], config["inputHeight"], config["inputWidth"], device=device)
    labels = F.one_hot(torch.arange(batch, device=device) % config["numClasses"], config["numClasses"]).float()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(x, labels)
        loss.backward()
        opt.step()
        value = float(loss)
        sync()
        return value

    def forward():
        with torch.no_grad():
            value = float(model(x, labels))
        sync()
        return value

    forward()
    forward_s = []
    for _ in range(steps):
        t0 = time.perf_counter()
        forward()
        forward_s.append(time.perf_counter() - t0)
    loss = step()
    step_s, step_cpu_s = [], []
    for _ in range(steps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        loss = step()
        step_s.append(time.perf_counter() - t0)
        step_cpu_s.append(time.process_time() - c0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    name = torch.cuda.get_device_name(device) if device_name == "cuda" else "cpu"
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "step_s": step_s,
                      "step_cpu_s": step_cpu_s, "forward_s": forward_s, "loss": loss, "peak_rss_mb": peak_mb,
                      "device": name}))


if __name__ == "__main__":
    main()
