"""Seeds 002 and 004: gradient descent on one-variable functions with fastbp's optimizers.

Seed 004: loss = (w + 1)^2 from w = 5, lr 0.2, 40 epochs (the minimum is at w = -1).
Seed 002: f(x) = x^2 from x = 5, lr 0.1, 50 steps, drawn as the seed draws it: the curve and the
points of the path (PNG), and as an animation (GIF) with --animate. Momentum and Adam take the
same walk for comparison. fastbp's optimizers work on any flat array: ``opt.step(params, grads)``.

    python examples/gradient_descent.py [--out gd_path.png] [--animate gd_path.gif]
"""
import argparse

import numpy as np

import fastbp


def descend(grad, start, optimizer, steps):
    """The path [x_0, x_1, ..., x_steps] of optimizer on a scalar with derivative grad."""
    x = np.array([start], dtype=np.float64)         # a flat parameter buffer of size 1
    path = [x[0]]
    for _ in range(steps):
        optimizer.step(x, np.array([grad(x[0])]))
        path.append(x[0])
    return np.array(path)


def seed_004(verbose=True):
    """loss = (w + 1)^2, w from 5, lr 0.2, 40 epochs, printed as the seed prints it."""
    w = np.array([5.0])
    opt = fastbp.SGD(lr=0.2)
    for epoch in range(40):
        loss = (w[0] + 1) ** 2
        opt.step(w, np.array([2 * (w[0] + 1)]))
        if verbose:
            print(f"After {epoch} epoch, w is {w[0]:f}, loss is {loss:f}")
    return w[0]


def seed_002_paths():
    f_grad = lambda x: 2 * x                                   # noqa: E731  d(x^2)/dx
    return {
        "SGD lr 0.1": descend(f_grad, 5.0, fastbp.SGD(lr=0.1), 50),
        "Momentum lr 0.1, 0.9": descend(f_grad, 5.0, fastbp.Momentum(lr=0.1, momentum=0.9), 50),
        "Adam lr 0.5": descend(f_grad, 5.0, fastbp.Adam(lr=0.5), 50),
    }


def plot(paths, path_png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = np.linspace(-10, 10, 400)
    fig, ax = plt.subplots(figsize=(10, 6))
    ax.plot(xs, xs ** 2, label="f(x) = x^2")
    for (name, p), color in zip(paths.items(), ["red", "tab:orange", "tab:green"]):
        ax.scatter(p, p ** 2, s=14, color=color, label=f"{name} path", zorder=3)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title("Gradient Descent to Find Minimum of f(x) = x^2")
    ax.legend()
    fig.savefig(path_png, dpi=80)
    plt.close(fig)


def animate(path, path_gif):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter
    xs = np.linspace(-10, 10, 400)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, xs ** 2, label="f(x) = x^2")
    (dot,) = ax.plot([], [], "ro")
    ax.set_xlim(-10, 10)
    ax.set_ylim(0, 100)
    ax.set_title("Gradient Descent Animation for f(x) = x^2")

    def frame(i):
        dot.set_data([path[i]], [path[i] ** 2])
        return (dot,)

    anim = FuncAnimation(fig, frame, frames=len(path), interval=100, blit=True)
    anim.save(path_gif, writer=PillowWriter(fps=10))
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gd_path.png", help="PNG of f(x) = x^2 with the descent paths")
    ap.add_argument("--animate", metavar="GIF", default=None, help="also save the SGD walk as an animated GIF")
    args = ap.parse_args(argv)
    w = seed_004()
    paths = seed_002_paths()
    for name, p in paths.items():
        print(f"x^2 with {name}: x_50 = {p[-1]:.3e}")
    plot(paths, args.out)
    print(f"path plot saved to {args.out}")
    if args.animate:
        animate(paths["SGD lr 0.1"], args.animate)
        print(f"animation saved to {args.animate}")
    return w, paths


if __name__ == "__main__":
    main()
