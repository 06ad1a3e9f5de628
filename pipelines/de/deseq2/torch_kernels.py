"""The DESeq2 kernels in torch (float64): the dispersion log posterior and the IRLS fit.

The same arithmetic as :class:`~gexplain.pipelines.de.deseq2.linesearch.Posterior` and
:func:`~gexplain.pipelines.de.deseq2.irls.irls`, gene block by gene block on one torch device
(CUDA where there is a GPU). The sums over samples are taken over every sample (no distinct-count
tally: on a GPU the elementwise terms are cheap, and plain reductions keep CUDA results
deterministic, where scatter-adds would not be). Inputs and outputs are numpy; the counts and
means of a block stay on the device while the line search moves the (gene,) vectors.
Genes whose IRLS diverges are refitted on the CPU by the numpy code
(:func:`~gexplain.pipelines.de.deseq2.irls.refit_diverged`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gexplain.pipelines.de.deseq2.dispersion import MIN_MU
from gexplain.pipelines.de.deseq2.irls import BETA_TOL, MAX_BETA, MAX_ITER, RIDGE, refit_diverged

DTYPE = torch.float64


def _outer(design: torch.Tensor) -> torch.Tensor:
    """``x_i x_j`` per sample and coefficient pair, dims (sample, coefficient**2)."""
    p = design.shape[1]
    return (design[:, :, None] * design[:, None, :]).reshape(-1, p * p)


@dataclass(frozen=True)
class TorchPosterior:
    """The dispersion log posterior of a set of genes on a torch device.

    Attributes
    ----------
    counts, mu
        Dims (gene, sample), float64 tensors.
    outer
        ``x_i x_j`` per sample and coefficient pair, dims (sample, coefficient**2).
    n_coefs
        Number of design columns.
    prior_mean
        Prior mean of log dispersion, dims (gene,), or None for the likelihood alone.
    prior_var
        Prior variance of log dispersion.
    """

    counts: torch.Tensor
    mu: torch.Tensor
    outer: torch.Tensor
    n_coefs: int
    prior_mean: torch.Tensor | None
    prior_var: float

    @classmethod
    def build(
        cls,
        counts: np.ndarray,
        mu: np.ndarray,
        design: np.ndarray,
        prior_mean: np.ndarray | None,
        prior_var: float,
        device: torch.device,
    ) -> TorchPosterior:
        """From (sample, gene) counts and means and a (sample, coefficient) design."""

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)

        return cls(
            put(counts).T.contiguous(),
            put(mu).T.contiguous(),
            _outer(put(design)),
            design.shape[1],
            None if prior_mean is None else put(prior_mean),
            float(prior_var),
        )

    @property
    def n_genes(self) -> int:
        """Genes of this posterior."""
        return int(self.counts.shape[0])

    def subset(self, rows: np.ndarray) -> TorchPosterior:
        """The posterior of genes ``rows`` (dims (k,)) alone."""
        t = torch.as_tensor(rows, device=self.counts.device)
        prior_mean = None if self.prior_mean is None else self.prior_mean[t]
        return TorchPosterior(
            self.counts[t], self.mu[t], self.outer, self.n_coefs, prior_mean, self.prior_var
        )

    def _gram(self, w: torch.Tensor) -> torch.Tensor:
        return (w @ self.outer).reshape(-1, self.n_coefs, self.n_coefs)

    def _inputs(
        self, log_alpha: np.ndarray, idx: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        device = self.counts.device
        t = torch.as_tensor(idx, device=device)
        a = torch.as_tensor(np.asarray(log_alpha, dtype=np.float64), device=device)
        return t, a, self.counts[t], self.mu[t]

    def value(self, log_alpha: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Log posterior at ``log_alpha`` (dims (k,)) for genes ``idx`` (dims (k,))."""
        t, a, y, mu = self._inputs(log_alpha, idx)
        alpha = torch.exp(a)[:, None]
        inv = 1.0 / alpha
        w = 1.0 / (1.0 / mu + alpha)
        cr = -0.5 * torch.linalg.slogdet(self._gram(w))[1]
        lg = torch.special.gammaln
        ll = (lg(y + inv) - lg(inv) - y * torch.log(mu + inv) - inv * torch.log(1.0 + mu * alpha)).sum(dim=1)
        out = ll + cr
        if self.prior_mean is not None:
            out = out - 0.5 * (a - self.prior_mean[t]) ** 2 / self.prior_var
        return out.cpu().numpy()

    def derivative(self, log_alpha: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Derivative of the log posterior in log dispersion (dims (k,))."""
        t, a, y, mu = self._inputs(log_alpha, idx)
        e = torch.exp(a)
        alpha = e[:, None]
        inv = 1.0 / alpha
        w = 1.0 / (1.0 / mu + alpha)
        gram, d_gram = self._gram(w), self._gram(-(w**2))
        cr = -0.5 * torch.einsum("gij,gji->g", torch.linalg.inv(gram), d_gram)
        mu_a = mu * alpha
        dg = torch.special.digamma
        terms = dg(inv) + torch.log(1.0 + mu_a) - mu_a / (1.0 + mu_a) - dg(y + inv) + y / (mu + inv)
        ll = inv[:, 0] ** 2 * terms.sum(dim=1)
        out = (ll + cr) * e
        if self.prior_mean is not None:
            out = out - (a - self.prior_mean[t]) / self.prior_var
        return out.cpu().numpy()


def _weights(mu: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """IRLS weights ``mu / (1 + mu alpha)``, dims (sample, gene)."""
    return mu / (mu * disp + 1.0)


def irls(
    counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, disp: np.ndarray, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`gexplain.pipelines.de.deseq2.irls.irls` on ``device``: same inputs, same outputs (numpy)."""

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)

    y_all, x, a_all = put(counts), put(design), put(disp)
    sf = put(size_factors)[:, None]
    n, p = design.shape
    outer = _outer(x)
    ridge = RIDGE * torch.eye(p, dtype=DTYPE, device=device)
    q, r = torch.linalg.qr(x)
    beta = torch.linalg.solve(r, q.T @ torch.log(y_all / sf + 0.1)).T.contiguous()
    beta_start = beta.clone()
    mu = torch.clamp(sf * torch.exp(x @ beta.T), min=MIN_MU)
    inv_all = 1.0 / a_all
    lg = torch.special.gammaln
    logbinom = (lg(y_all + inv_all) - lg(y_all + 1.0) - lg(inv_all)).sum(dim=0)
    dev = torch.zeros(counts.shape[1], dtype=DTYPE, device=device)
    active = torch.arange(counts.shape[1], device=device)
    diverged: list[torch.Tensor] = []
    n_iter = 0
    while active.numel():
        y, m, a = y_all[:, active], mu[:, active], a_all[active]
        w = _weights(m, a)
        z = (torch.log(m / sf) + (y - m) / m) * w
        rhs = torch.einsum("ni,ng->gi", x, z)
        normal = (w.T @ outer).reshape(-1, p, p) + ridge
        beta_hat = torch.linalg.solve(normal, rhs[..., None])[..., 0]
        n_iter += 1
        bad = (beta_hat.abs() > MAX_BETA).any(dim=1) | (n_iter >= MAX_ITER)
        if bool(bad.any()):
            diverged.append(active[bad])
            beta[active[bad]] = beta_hat[bad]  # R keeps the last iterate (the optim start)
            keep = ~bad
            active, beta_hat, y, a = active[keep], beta_hat[keep], y[:, keep], a[keep]
        if not active.numel():
            break
        beta[active] = beta_hat
        m = torch.clamp(sf * torch.exp(x @ beta_hat.T), min=MIN_MU)
        mu[:, active] = m
        inv = 1.0 / a
        terms = ((y + inv) * torch.log(inv + m) - y * torch.log(m)).sum(dim=0)
        new_dev = -2.0 * (n * inv * torch.log(a) - logbinom[active] + terms)
        ratio = (new_dev - dev[active]).abs() / (new_dev.abs() + 0.1)
        dev[active] = new_dev
        active = active[(ratio >= BETA_TOL) | (n_iter == 1)]  # R: converged only after the first step
    w = _weights(mu, a_all)
    gram = (w.T @ outer).reshape(-1, p, p)
    inv_normal = torch.linalg.inv(gram + ridge)
    cov = inv_normal @ gram @ inv_normal
    hat = (outer @ inv_normal.reshape(-1, p * p).T) * w
    mu_out = sf * torch.exp(x @ beta.T)
    out = [t.cpu().numpy() for t in (beta, mu_out, hat, cov)]
    genes = torch.cat(diverged).cpu().numpy() if diverged else np.zeros(0, dtype=np.int64)
    refit_diverged(
        counts, size_factors, design, disp, genes, beta_start.cpu().numpy(), (out[0], out[1], out[3])
    )
    return out[0], out[1], out[2], out[3]
