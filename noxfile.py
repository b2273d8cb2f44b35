"""
Developer tasks: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s bench``,
``nox -s docs`` (``nox -s docs -- serve`` to preview the site).

Sessions reuse their virtualenvs (``-R`` skips reinstalling); tests run on every
Python from 3.10 that is installed here.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest options after --)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[typing]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (mkdocs.yml); ``-- serve`` serves it instead."""
    # The lint extra brings ruff, which mkdocstrings formats signatures with.
    session.install("-e", ".[docs,lint]")
    quiet = {"NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its own future
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:], env=quiet)
    else:
        # Any warning (a broken link, a docstring griffe cannot read) fails the build.
        site = f"{session.create_tmp()}/site"
        session.run("mkdocs", "build", "--strict", "--site-dir", site, env=quiet)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks: relaycall beside a bare aiohttp loop and the SDK, ratios printed."""
    session.install("-e", ".[bench]")
    # The baseline the benchmarks compare against; never a relaycall dependency.
    session.install("signalwire-sdk")
    session.run("python", "-m", "benchmarks", *session.posargs)
