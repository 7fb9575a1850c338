"""meta_pl_mixup against supervised training and mixup_ssl on digits, 5 labels per class.

The shared digits setting (tests/methods/conftest.py) with 32 unlabeled images per step, since
cross-domain mixup pairs the i-th labeled with the i-th unlabeled example, and the consistency
ramp over the first 400 of the 1000 steps (the paper's 4000 would never finish). Mean over three
fixed seeds. Against mixup_ssl the difference is seed noise: on these seeds 12.72% against 13.00%
on one machine and 12.91% against 12.81% on another (float kernels differ between CPUs), and over
seeds 0-12 11.12% against 11.29%, a difference of 0.17 +- 0.29 (standard error) points: on digits
the meta step adds little to cross-domain mixup, which gains about 3.5 points over supervised
training (16.53% here). So against mixup_ssl the test asks only that the meta step costs nothing
beyond that noise (at most 1 point, 3.6 test images); the meta-gradient itself is tested in
test_meta_pl, and the paired comparison at convergence is the fashion-ssl-long suite's."""
import statistics

from tests.methods.conftest import MARGIN

SEEDS = (0, 1, 2)
COMMON = ("unlabeled_batch_size=32",)


def mean_error(digits_error, method: str, *overrides: str) -> float:
    return statistics.fmean(digits_error(method, *COMMON, f"seed={seed}", *overrides) for seed in SEEDS)


def test_meta_pl_mixup_beats_supervised_and_keeps_up_with_mixup_ssl_on_digits(digits_error):
    supervised = mean_error(digits_error, "supervised")
    mixup_ssl = mean_error(digits_error, "mixup_ssl", "mixup_ssl.rampup_steps=400")
    meta_pl_mixup = mean_error(digits_error, "meta_pl_mixup", "meta_pl_mixup.rampup_steps=400")
    errors = f"supervised {supervised:.2f}%, mixup_ssl {mixup_ssl:.2f}%, meta_pl_mixup {meta_pl_mixup:.2f}%"
    assert meta_pl_mixup < supervised - MARGIN and meta_pl_mixup < mixup_ssl + 1.0, errors
