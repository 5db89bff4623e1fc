import pytest

from tests.alerting.receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()
