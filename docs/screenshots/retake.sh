#!/usr/bin/env bash
# Retake the README's screenshots (chain.png, phase-no-go.png) on purpose: the page tests take
# them into their temporary directories on every run and into this folder only when asked.
set -euo pipefail
cd "$(dirname "$0")/../.."
GATECHECK_SCREENSHOTS="$PWD/docs/screenshots" .venv/bin/python -m pytest -q -n0 tests/render/test_pages.py \
  -k "test_the_chain_page_shows_every_verdict_in_words or test_a_no_go_phase_page_shows_its_failing_group"
