"""What the reader fuzz tests (configs, corpus, fine-tuning data) share: the hypothesis settings and the one
property every reader must have."""

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from electra.errors import UserError

# FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps each fuzz file under ~10 s.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(load, *args, name: str | None = None, **kwargs):
    """``load(*args, **kwargs)``, or None after asserting that it raised a one-line UserError (naming ``name`` if
    given)."""
    try:
        result = load(*args, **kwargs)
    except UserError as e:
        message = str(e)
        assert len(message.splitlines()) == 1 and "\n" not in message, message
        assert name is None or name in message, message
        return None
    assert result is not None
    return result


def mostly(valid, invalid):
    """Nine draws in ten from ``valid``: random inputs rarely parse, and the success paths need exercise too."""
    return st.integers(0, 9).flatmap(lambda i: invalid if i == 0 else valid)
