"""Maps the repository's top-level folders into the `gymbox` namespace (`gymbox.environments`, ...)."""

from setuptools import find_packages, setup

FOLDERS = ("environments", "agent", "rewards", "harness", "tasks", "integrations")

packages, package_dir = [], {}
for folder in FOLDERS:
    package_dir[f"gymbox.{folder}"] = folder
    packages.append(f"gymbox.{folder}")
    packages += [f"gymbox.{folder}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir=package_dir,
    # Data files live in plain folders (tasks/data/...), not packages: list them by pattern.
    package_data={"": ["*.json", "*.jsonl", "*.yaml", "*.txt", "Dockerfile"],
                  "gymbox.agent": ["adapters/*/*"],  # the default policy's LoRA adapter
                  "gymbox.harness": ["view/templates/*.html", "view/static/*"],  # `gymbox view`'s pages
                  "gymbox.tasks": ["data/*/*.yaml", "data/*/*.json", "data/*/*.jsonl"]},
    # Only the files listed above: with True, setuptools warns at length about every data folder (which it takes
    # for a package), and the wheel holds the same files either way.
    include_package_data=False,
)
