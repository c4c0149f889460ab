"""Print the README's configuration table from consumer.settings.Settings.

`python scripts/settings_table.py` — paste between the markers in README.md;
tests/unit/test_settings.py fails when the README misses a setting.
"""

from galleryrank.consumer.settings import Settings


def main() -> None:
    print("| setting | env var | CLI flag | default | meaning |")
    print("| --- | --- | --- | --- | --- |")
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else f"`{default}`"
        print(
            f"| {name} | `GALLERYRANK_{name.upper()}` | `--{name.replace('_', '-')}` | {shown} | {field.description} |"
        )


if __name__ == "__main__":
    main()
