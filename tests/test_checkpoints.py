"""Loading exported models as `Prior`s, including sidecars written before a field was renamed."""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxrestore import checkpoints, priors


def test_an_export_loads_as_a_prior_and_an_old_sidecar_still_loads(tiny_model, tmp_path):
    prior = checkpoints.load_prior(tiny_model)
    assert isinstance(prior, priors.Prior)
    assert (prior.sample_rate, prior.sigma_data) == (22050, 0.2)
    assert prior.length_multiple == checkpoints.LENGTH_MULTIPLE and prior.info.step == 0
    # A sidecar of an older version names the clip length `num_samples`, as the shipped one does.
    old = tmp_path / "old.msgpack"
    shutil.copy(tiny_model, old)
    sidecar = json.loads(open(tiny_model.replace(".msgpack", ".json")).read())
    sidecar["num_samples"] = sidecar.pop("clip_length")
    old.with_suffix(".json").write_text(json.dumps(sidecar))
    x = 0.2 * jax.random.normal(jax.random.key(0), (1024,))
    np.testing.assert_array_equal(checkpoints.load_prior(old)(x, 0.3), prior(x, 0.3))
    with pytest.raises(ValueError, match="no such file"):
        checkpoints.load_prior(tmp_path / "missing.msgpack")
