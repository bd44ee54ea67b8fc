"""docs/semantics.md's request table is the oracle's, and the oracle says what its rules say.

The table on the page is generated (``python python_tests/oracle.py semantics-table --write``)
rather than kept by hand: a hand-kept table is a fourth copy of the request rules that nothing
but review keeps right, while a generated one cannot disagree with the oracle the Python and C
tests use. This test fails when the committed table is not what the oracle now answers (the
oracle changed and the page was not regenerated, or the page was edited by hand).
"""

import oracle


def test_the_committed_table_is_the_oracles():
    with open(oracle.SEMANTICS_DOC, encoding='utf-8') as f:
        committed = oracle.semantics_doc_table(f.read())
    assert committed is not None, 'docs/semantics.md has lost its generated request table'
    want = '\n'.join(oracle.semantics_table())
    assert committed == want, (
        'docs/semantics.md: the request table differs from the oracle; run '
        '`python python_tests/oracle.py semantics-table --write` and review the change')


def test_the_table_covers_every_rule_and_request():
    rows = list(oracle.semantics_table())[3:-1]
    assert len(rows) == len(oracle.REQUESTS)
    cells = ' '.join(rows)
    for rule in (2, 3, 4, 5):  # rule 1 (malformed flags) has no standard request
        assert f'refused ({rule})' in cells, rule
    assert 'format |' in cells  # FORMAT without ND served for unsigned bytes (rule 5)
