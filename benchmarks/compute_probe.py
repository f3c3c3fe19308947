"""A pure-compute probe for the container tax: one small torch MLP trained for three epochs, timed.

No pytabkit, no files, no data loading: run alternately on the host and in the CPU image, it says
whether the container itself computes slower (threads, seccomp, CPU limits), apart from anything
the trainer does. Prints the seconds of the timed epochs. Usage: python compute_probe.py [THREADS]
"""

import sys
import time

import torch

torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
x, y = torch.randn(40_000, 26), torch.randn(40_000, 1)
net = torch.nn.Sequential(torch.nn.Linear(26, 256), torch.nn.SELU(), torch.nn.Dropout(0.15),
                          torch.nn.Linear(256, 256), torch.nn.SELU(), torch.nn.Linear(256, 1))
optimiser = torch.optim.Adam(net.parameters(), 1e-3)


def epoch() -> None:
    for i in range(0, len(x), 256):
        optimiser.zero_grad()
        loss = ((net(x[i:i + 256]) - y[i:i + 256]) ** 2).mean()
        loss.backward()
        optimiser.step()


epoch()  # warm-up: first-touch allocation and kernel selection
start = time.perf_counter()
for _ in range(3):
    epoch()
print(f"{time.perf_counter() - start:.4f}")
