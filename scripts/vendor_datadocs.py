"""The documented source of shequ/static/datadocs/: the JS/CSS files GX 1.24's Data Docs templates load from
CDNs, taken from the same package versions on the npm registry (`npm pack`), with their licence files.

    python scripts/vendor_datadocs.py            # needs npm and registry access; rewrites the folder

The CDN URLs are those in great_expectations/render/view/templates/{page,js_script_imports}.j2. `vega@5`,
`vega-lite@5` and `vega-embed@6` float on jsDelivr; they are pinned here to the newest release of that major
at vendoring time. Where a template gives an SRI hash, the vendored file is checked against it.
"""

import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "shequ" / "static" / "datadocs"

# CDN URL in the GX templates -> (npm spec, file inside the package, SRI hash from the template or None)
FILES = {
    "https://cdn.jsdelivr.net/npm/vega@5": ("vega@5.33.1", "build/vega.min.js", None),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": ("vega-lite@5.23.0", "build/vega-lite.min.js", None),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": ("vega-embed@6.29.0", "build/vega-embed.min.js", None),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        ("@fortawesome/fontawesome-free@6.6.0", "css/all.min.css", None),
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery@3.7.1", "dist/jquery.min.js", None),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        ("popper.js@1.12.9", "dist/umd/popper.min.js",
         "sha384-ApNbgh9B+Y1QKtv3Rn7W3mgPxhU9K/ScQsAP7hUibX39j7fakFPskvXusvfa0b4Q"),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        ("bootstrap@4.3.1", "dist/js/bootstrap.min.js",
         "sha384-JjSmVgyd0p3pXB1rRibZUAYoIIy6OrQ6VrjIEaFf/nJGzIxFDsf4x0xIM+B07jRM"),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        ("bootstrap@4.3.1", "dist/css/bootstrap.min.css", None),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        ("bootstrap-table@1.19.1", "dist/bootstrap-table.min.js", None),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        ("bootstrap-table@1.19.1", "dist/bootstrap-table.min.css", None),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        ("bootstrap-table@1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.js", None),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        ("bootstrap-table@1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.css", None),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        ("bootstrap-table@1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.min.css", None),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        ("bootstrap-datepicker@1.9.0", "dist/js/bootstrap-datepicker.min.js", None),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        ("bootstrap-datepicker@1.9.0", "dist/css/bootstrap-datepicker.min.css", None),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        ("@forevolve/bootstrap-dark@1.1.0", "dist/css/bootstrap-prefers-dark.css", None),
}
# files a vendored stylesheet loads relative to itself (Font Awesome's ../webfonts/)
EXTRA = {"@fortawesome/fontawesome-free@6.6.0": ["webfonts/"]}
LICENCE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md")


def folder(spec: str) -> str:
    return spec.replace("@", "", 1).replace("/", "-") if spec.startswith("@") else spec


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    manifest, specs = {}, sorted({s for s, _, _ in FILES.values()})
    with tempfile.TemporaryDirectory() as tmp:
        tars = {}
        for spec in specs:
            name = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, check=True, capture_output=True,
                                  text=True).stdout.strip().splitlines()[-1]
            tars[spec] = tarfile.open(Path(tmp) / name)
        for spec, tar in tars.items():
            members = {m.name.removeprefix("package/"): m for m in tar.getmembers() if m.isfile()}
            wanted = [p for s, p, _ in FILES.values() if s == spec]
            wanted += [p for pre in EXTRA.get(spec, []) for p in members if p.startswith(pre)]
            lic = [p for p in LICENCE_NAMES if p in members]
            for p in wanted + lic:
                dest = OUT / folder(spec) / p
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tar.extractfile(members[p]).read())
            pkg = json.load(io.TextIOWrapper(tar.extractfile(members["package.json"]), encoding="utf-8"))
            if not lic:  # no licence file in the package: record the package.json licence and the notice
                (OUT / folder(spec) / "LICENSE").write_text(
                    f"{pkg['name']} {pkg['version']}: licence \"{pkg.get('license')}\" (package.json); "
                    f"no licence file is shipped in the npm package. Author: {pkg.get('author')}\n",
                    encoding="utf-8")
            manifest[spec] = {"license": pkg.get("license"), "files": sorted(wanted)}
    urls = {}
    for url, (spec, path, sri) in FILES.items():
        rel = f"{folder(spec)}/{path}"
        data = (OUT / rel).read_bytes()
        if sri:
            algo, want = sri.split("-", 1)
            got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
            if got != want:
                raise SystemExit(f"{url}: the npm file does not match the template's SRI hash")
        urls[url] = rel
    (OUT / "MANIFEST.json").write_text(json.dumps({"cdn_to_local": urls, "packages": manifest}, indent=2,
                                                  ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(urls)} CDN URLs -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
