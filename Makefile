# Two commands a newcomer needs: `make demo` and `make test`.
# Both build .venv at the repo root from the package registries.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test venv clean

$(BIN)/hardneg: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build; anything unpinned would fetch a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $@

venv: $(BIN)/hardneg

demo: venv
	./demo.sh

# pytest exits 5 when it collects nothing: that is a failure, never a pass.
test: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) runs/demo
