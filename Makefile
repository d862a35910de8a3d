# The two commands of the README:
#   make run   build, then `flashattn bench` on the default problem
#   make test  install what is missing, build release + sanitizer configs, run every test
.PHONY: all deps build run test test-release test-asan bench clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake --preset release
	cmake --build --preset release

run: deps
	cmake --preset release
	cmake --build --preset release --target flashattn_cli
	./build/release/flashattn bench

test: test-release test-asan

test-release: build
	ctest --preset release

test-asan: deps
	cmake --preset asan
	cmake --build --preset asan
	ctest --preset asan

clean:
	rm -rf build
