"""No link or file reference in the repository's documents points outside the
repository or to a file that does not exist (the CLI's printed paths: see
tests/test_cli_newcomer.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Top-level folders whose files the documents refer to by path.
TOP = ('pyg_mentor', 'benchmarks', 'docs', 'datasets', 'examples', 'tests', '.ci')
LINK = re.compile(r'\]\(([^)\s]+)\)')
#: `path/to/file.ext` in backticks (no placeholder, no glob, no option value).
CODE_PATH = re.compile(
    r'`((?:'
    + '|'.join(re.escape(t) for t in TOP)
    + r')/[\w./-]*\.(?:md|py|json|csv|toml|gz|png|txt))`'
)
OUTSIDE = re.compile(r'\.\./shared|shared/(?:data|reference)')


def repo_files(pattern: str) -> list[Path]:
    try:
        out = subprocess.run(
            ['git', 'ls-files', '-co', '--exclude-standard', pattern],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('needs git')
    return [REPO / line for line in out.splitlines() if (REPO / line).is_file()]


def test_markdown_links_resolve_inside_the_repository():
    documents = repo_files('*.md')
    assert REPO / 'README.md' in documents and REPO / 'docs' / 'differences.md' in documents
    broken = []
    for doc in documents:
        for target in LINK.findall(doc.read_text()):
            if re.match(r'[a-z]+:', target) or target.startswith('#'):
                continue  # a web address or an anchor of the same page
            path = (doc.parent / target.split('#')[0]).resolve()
            if not path.is_relative_to(REPO) or not path.exists():
                broken.append(f'{doc.relative_to(REPO)}: ({target})')
    assert not broken, broken


def test_documents_and_package_name_existing_files_in_the_repository():
    documents = [
        REPO / 'README.md',
        REPO / 'CHANGELOG.md',
        *repo_files('docs/*.md'),
        *repo_files('datasets/*.md'),
        *repo_files('pyg_mentor/*.py'),
        *repo_files('pyg_mentor/**/*.py'),
        *repo_files('benchmarks/*.py'),
    ]
    outside, missing = [], []
    for doc in documents:
        text = doc.read_text()
        outside += [f'{doc.relative_to(REPO)}: {m.group(0)}' for m in OUTSIDE.finditer(text)]
        missing += [
            f'{doc.relative_to(REPO)}: {p}'
            for p in CODE_PATH.findall(text)
            if not (REPO / p).exists()
        ]
    assert not outside, outside
    assert not missing, missing
