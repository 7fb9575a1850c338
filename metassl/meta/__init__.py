"""Meta-gradient primitives on ``torch.func``, shared by every meta method.

Parameters travel as a dict ``name -> tensor`` (``params(model)`` gives the live ones); every
look-ahead or perturbed pass runs the module functionally with substitute parameters, so the
module's own parameters are never written.

BatchNorm policy, the ``bn`` argument of ``forward``:

* ``"eval"`` (default, as the meta-gradient SSL authors' code does): running statistics, dropout
  off, nothing written;
* ``"train"``: batch statistics and dropout; running-statistic updates go into copies of the
  buffers made inside the pass and are thrown away.

Either way the model's parameters, buffers (running statistics, batch counters) and train/eval
flags are bit-identical afterwards.

API (``from metassl import meta``):

``meta.params(model) -> Params``
    the trainable parameters by name (DDP unwrapped); the live tensors.
``meta.forward(model, theta, x, bn="eval") -> logits``
    one functional pass f(x; theta).
``meta.grad(loss, theta, create_graph=False) -> Params``
    d loss / d theta; rank-averaged unless ``create_graph`` (then local and differentiable).
``meta.grad_and(loss, theta, also) -> (Params, Tensor)``
    ``grad`` and, from the same backward pass, d loss / d also (local to the rank).
``meta.detached_mean(grads) -> Params``
    detached, rank-averaged copies (the step a look-ahead takes when grads keep their graph).
``meta.lookahead(theta, grads, lr) -> Params``
    theta - lr * grads, one plain SGD step; differentiable through graph-carrying grads.
``meta.hypergradient(inner_grads, wrt, outer_grads, lr) -> Tensor``
    exact d L_out(theta - lr * g(h)) / dh = -lr (dg/dh)^T grad L_out(theta') for g taken with
    ``create_graph=True`` and outer_grads at theta' (see its docstring for data parallelism).
``meta.directional_fd(fn, theta, v, radius=0.01, start=None, base=None) -> (centre, J v)``
    central difference at theta +- eps v, eps = radius / ||v||; the centre (mean of the pair)
    is fn(theta) to O(radius^2), so the pair also gives the value at theta. Both passes draw
    the same dropout masks and run in float32 under autocast; no graph is kept. Given
    ``base`` = fn(theta), one pass: the forward difference, O(radius).
``meta.directional_jvp(fn, theta, v) -> (fn(theta), J v)``
    the same exactly, one forward-mode pass (about 1.5x the pair's cost on a convnet).
``meta.Kinks()``
    ``with kinks.record(): pass_at_theta``, then ``with kinks.replay(): ...`` inside ``fn``: the
    replayed passes keep the recorded ReLU / LeakyReLU on-off pattern and max-pool winners, so a
    finite difference of them converges to the exact derivative on a piecewise-linear network.
``meta.global_norm(tensors) -> Tensor``, ``meta.world_size() -> int``, ``meta.rng_state(device)``

``fn`` in the directional derivatives maps a parameter dict to a tensor or a tuple of tensors,
typically ``lambda p: score(meta.forward(model, p, x))``.

Typical uses. Meta-gradient pseudo labels (first order): ``g = grad(labeled_loss, theta)``, then
``directional_fd(lambda p: softmax(forward(model, p, x_u)), theta, g)``. A learned per-sample
weight or mixing coefficient h (exact): ``g = grad(inner_loss(h), theta, create_graph=True)``,
``theta2 = lookahead(theta, detached_mean(g), lr)``, ``v = grad(outer_loss(theta2), theta2)``,
``hypergradient(g, h, v, lr)``; or differentiate ``outer_loss(lookahead(theta, g, lr))`` by
autograd directly in a single process, which gives the same number.
"""
from metassl.meta.functional import (
    BNPolicy,
    Kinks,
    Params,
    detached_mean,
    directional_fd,
    directional_jvp,
    forward,
    global_norm,
    grad,
    grad_and,
    hypergradient,
    lookahead,
    params,
    rng_state,
    world_size,
)

__all__ = ["BNPolicy", "Kinks", "Params", "detached_mean", "directional_fd", "directional_jvp", "forward",
           "global_norm", "grad", "grad_and", "hypergradient", "lookahead", "params", "rng_state", "world_size"]
