import os

import pytest

from benchmarks._common import available_bytes, fmt_bytes, machine_info, status_bytes


def test_fmt_bytes():
    assert fmt_bytes(None) == 'n/a'
    assert fmt_bytes(241 * 2**20) == '241 MB'
    assert fmt_bytes(5.67 * 2**30) == '5.67 GB'
    assert fmt_bytes(3.6 * 2**40) == '3.6 TB'


@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='Linux only')
def test_memory_fields():
    assert status_bytes('VmHWM:') >= status_bytes('VmRSS:') > 0
    assert available_bytes() > 0
    with pytest.raises(KeyError):
        status_bytes('NoSuchField:')


def test_machine_info_records_the_commit_and_machine():
    info = machine_info()
    assert {'date', 'commit', 'torch', 'threads', 'cores'} <= set(info)
    assert info['threads'] >= 1
