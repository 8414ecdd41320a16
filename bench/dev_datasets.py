#!/usr/bin/env python3
"""Build extra labelled development datasets, of kinds the shared set lacks, from package registries.

    python bench/dev_datasets.py OUTDIR [--only NAME ...] [--per-class N] [--check]

Each recipe downloads Debian packages with `apt-get download` into a temporary folder, unpacks
them with `dpkg -x` (nothing is installed), and writes a class-per-subfolder folder
OUTDIR/<name>/<class>/<item>.png|.txt. Everything is drawn with a fixed seed, so a rebuild from
the same package versions gives the same files. Needs numpy and Pillow (with FreeType and raqm
for the script shaping); `xfig-drawings` also needs Ghostscript (`gs`, which fig2dev calls for PNG
output); `--check` needs scikit-learn. These are local dev data: never bundle them in the repo.

  OUTDIR/xfig-drawings/<library>/<figure>.png
      Technical line art: the xfig clip-art libraries (electronic schematics and parts, maps,
      flags, knitting charts, welding diagrams, fasteners, networks, mechanical DIN parts, ...),
      rendered to PNG by fig2dev at magnification 2 (longest side capped at 320 px); mostly
      black line drawings on white, a few in colour (flags), many sizes. Class = library folder;
      libraries with fewer than 40 figures, and the mixed 'Examples', are left out; at most 150
      per class.  Source: Debian xfig-libs (licence: "xfig", a permissive MIT-style licence),
      rendered with Debian fig2dev (xfig licence).
  OUTDIR/scripts/<writing system>/<i>.png
      Printed text by writing system: short "document snippets" of 1-3 lines of real strings
      (country, language, currency and script names as translated by the iso-codes project into
      languages using that script), set in several fonts (Noto Sans/Serif, Kufi/Naskh, DejaVu,
      FreeFont; regular, bold, italic), sizes 16-40 px, dark ink on light paper tints. 12
      classes (latin, cyrillic, greek, arabic, hebrew, devanagari, bengali, thai, georgian,
      armenian, tamil, ethiopic), 250 each by default.  Sources: Debian iso-codes (LGPL-2.1+),
      fonts-noto-core (SIL OFL 1.1), fonts-dejavu-core (Bitstream Vera licence, permissive),
      fonts-freefont-ttf (GPL-3+ with font exception).
  OUTDIR/wordnet-glosses/<lexicographer file>/<synset offset>.txt
      WordNet 3.0 glosses (definition plus usage examples, without the headwords), labelled by
      the synset's lexicographer category: 12 classes (noun.animal, noun.plant, noun.food,
      noun.artifact, noun.person, noun.location, noun.body, noun.substance, noun.communication,
      noun.act, verb.motion, verb.communication), 250 each by default.  Source: Debian
      wordnet-base (WordNet 3.0 licence: permissive, BSD-like, Princeton University).

Check a build (counts per class, and the baseline of the shared protocol with k labels per class:
raw pixels at 32x32 RGB + StandardScaler, or TF-IDF, then LogisticRegression; accuracy on all
other items, mean of 5 draws):

    python bench/dev_datasets.py ~/data --check-only
"""
import argparse, gettext, glob, os, random, shutil, subprocess, sys, tempfile, unicodedata

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SEED = 1234


def run(cmd, cwd):
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def debs(cache, *packages):
    """apt-get download each package into the cache and unpack it under cache/root; return root."""
    root = os.path.join(cache, "root")
    for pkg in packages:
        if not glob.glob(os.path.join(cache, f"{pkg}_*.deb")):
            run(["apt-get", "download", pkg], cache)
            run(["dpkg", "-x", glob.glob(os.path.join(cache, f"{pkg}_*.deb"))[0], root], cache)
    return root


def fresh(out, name):
    d = os.path.join(out, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    return d


# --------------------------------------------------------------------------------------------
# xfig-drawings


def xfig_drawings(out, cache, per_class):
    per_class = per_class or 150
    if not shutil.which("gs"):
        sys.exit("xfig-drawings needs Ghostscript (gs) for fig2dev's PNG output: apt-get install ghostscript")
    root = debs(cache, "xfig-libs", "fig2dev")
    fig2dev = os.path.join(root, "usr/bin/fig2dev")
    libs = os.path.join(root, "usr/share/xfig/Libraries")
    dest = fresh(out, "xfig-drawings")
    for lib in sorted(os.listdir(libs)):
        figs = sorted(glob.glob(os.path.join(libs, lib, "**", "*.fig"), recursive=True))
        if lib == "Examples" or len(figs) < 40:
            continue
        random.Random(f"{SEED}-{lib}").shuffle(figs)
        d = os.path.join(dest, lib.lower())
        os.makedirs(d, exist_ok=True)
        n = 0
        for src in figs:
            if n >= per_class:
                break
            name = os.path.relpath(src, os.path.join(libs, lib))[: -len(".fig")].replace(os.sep, "_").replace(" ", "_")
            tmp = os.path.join(cache, "fig.png")
            r = subprocess.run([fig2dev, "-L", "png", "-m", "2", "-S", "2", "-b", "8", src, tmp],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode != 0 or not os.path.exists(tmp):
                continue
            try:
                im = Image.open(tmp).convert("RGB")
            except OSError:
                continue
            finally:
                os.remove(tmp)
            lo = np.asarray(im.convert("L"))
            if min(im.size) < 8 or lo.min() > 240:  # blank or degenerate figure
                continue
            im.thumbnail((320, 320), Image.LANCZOS)
            im.save(os.path.join(d, f"{name}.png"))
            n += 1
        print(f"xfig-drawings/{lib.lower()}: {n}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# scripts

# class -> (Unicode character-name prefix, iso-codes languages written in it, Noto font stems)
SCRIPTS = {
    "latin": ("LATIN", "de fr es it pl cs tr vi hu nl sv fi ro pt ca da sk hr lt lv et".split(), ["NotoSans", "NotoSerif"]),
    "cyrillic": ("CYRILLIC", "ru uk bg be mk sr kk ky mn tg tt".split(), ["NotoSans", "NotoSerif"]),
    "greek": ("GREEK", ["el"], ["NotoSans", "NotoSerif"]),
    "arabic": ("ARABIC", "ar fa ur ps ug ckb sd".split(), ["NotoSansArabic", "NotoNaskhArabic", "NotoKufiArabic"]),
    "hebrew": ("HEBREW", ["he"], ["NotoSansHebrew", "NotoSerifHebrew", "NotoRashiHebrew"]),
    "devanagari": ("DEVANAGARI", "hi mr ne mai kok".split(), ["NotoSansDevanagari", "NotoSerifDevanagari"]),
    "bengali": ("BENGALI", "bn bn_IN bn_BD as".split(), ["NotoSansBengali", "NotoSerifBengali"]),
    "thai": ("THAI", ["th"], ["NotoSansThai", "NotoSerifThai", "NotoLoopedThai"]),
    "georgian": ("GEORGIAN", ["ka"], ["NotoSansGeorgian", "NotoSerifGeorgian"]),
    "armenian": ("ARMENIAN", ["hy"], ["NotoSansArmenian", "NotoSerifArmenian"]),
    "tamil": ("TAMIL", ["ta"], ["NotoSansTamil", "NotoSerifTamil", "NotoSerifTamilSlanted"]),
    "ethiopic": ("ETHIOPIC", "am ti".split(), ["NotoSansEthiopic", "NotoSerifEthiopic"]),
}
ISO_DOMAINS = ["iso_3166-1", "iso_3166-3", "iso_639-2", "iso_639-3", "iso_639-5", "iso_4217", "iso_15924", "iso_3166-2"]


def _in_script(s, prefix):
    letters = [c for c in s if c.isalpha()]
    if len(letters) < 3:
        return False
    hits = sum(unicodedata.name(c, "").startswith(prefix) for c in letters)
    return hits >= 0.9 * len(letters)


class _Coverage:
    """Which characters a font has a real glyph for (not .notdef), cached per character."""

    def __init__(self, path):
        self.font = ImageFont.truetype(path, 24)
        m = self.font.getmask("\U0010fffd")
        self.notdef = (m.size, bytes(m))
        self.known = {}

    def covers(self, text):
        for c in text:
            if c.isspace() or unicodedata.category(c).startswith("M"):
                continue
            if c not in self.known:
                m = self.font.getmask(c)
                self.known[c] = (m.size, bytes(m)) != self.notdef
            if not self.known[c]:
                return False
        return True


def scripts(out, cache, per_class):
    per_class = per_class or 250
    root = debs(cache, "iso-codes", "fonts-noto-core", "fonts-dejavu-core", "fonts-freefont-ttf")
    locale = os.path.join(root, "usr/share/locale")
    fonts = sorted(glob.glob(os.path.join(root, "usr/share/fonts/truetype/*/*.ttf")))
    generic = [f for f in fonts if ("dejavu" in f and "ExtraLight" not in f and "Condensed" not in f) or "freefont" in f]
    dest = fresh(out, "scripts")
    for cls, (prefix, langs, stems) in SCRIPTS.items():
        pool = set()
        for lang in langs:
            for dom in ISO_DOMAINS:
                mo = os.path.join(locale, lang, "LC_MESSAGES", f"{dom}.mo")
                if os.path.exists(mo):
                    with open(mo, "rb") as f:
                        cat = gettext.GNUTranslations(f)._catalog
                    pool.update(v.strip() for k, v in cat.items() if k and isinstance(v, str) and _in_script(v, prefix))
        pool = sorted(s for s in pool if len(s) <= 40)
        rng = random.Random(f"{SEED}-{cls}")
        cands = [f for f in fonts if os.path.basename(f).split("-")[0] in stems] + generic
        faces = [_Coverage(f) for f in cands if "Display" not in f and "Condensed" not in f]
        # keep fonts that have the script's letters at all (a sample of the strings' letters)
        letters = "".join(c for s in rng.sample(pool, min(100, len(pool))) for c in s if c.isalpha())
        faces = [f for f in faces if f.covers(letters)]
        print(f"scripts/{cls}: {len(pool)} strings, {len(faces)} fonts", file=sys.stderr)
        if not faces:
            sys.exit(f"scripts/{cls}: no font covers the script")
        d = os.path.join(dest, cls)
        os.makedirs(d, exist_ok=True)
        i = tries = 0
        while i < per_class:
            tries += 1
            if tries > 50 * per_class:
                sys.exit(f"scripts/{cls}: fonts cover too few of the strings")
            lines = []
            for _ in range(rng.choice([1, 2, 2, 3])):
                line = rng.choice(pool)
                while len(line) < 18 and rng.random() < 0.6:
                    line += rng.choice([", ", " ", " - "]) + rng.choice(pool)
                lines.append(line)
            ok = [f for f in faces if f.covers("".join(lines))]
            if not ok:
                continue
            font = ImageFont.truetype(rng.choice(ok).font.path, rng.randint(16, 40))
            size = font.size
            boxes = [font.getbbox(t) for t in lines]
            w = max(b[2] - min(0, b[0]) for b in boxes)
            lh = int(size * 1.6)
            mx, my = rng.randint(4, 24), rng.randint(4, 20)
            paper = tuple(rng.randint(215, 255) for _ in range(3))
            ink = tuple(rng.randint(0, 90) for _ in range(3))
            im = Image.new("RGB", (w + 2 * mx, lh * len(lines) + 2 * my), paper)
            dr = ImageDraw.Draw(im)
            rtl = cls in ("arabic", "hebrew")
            for j, (t, b) in enumerate(zip(lines, boxes)):
                x = mx + (w - (b[2] - b[0]) if rtl else 0) - min(0, b[0])
                dr.text((x, my + j * lh + int(size * 0.2)), t, font=font, fill=ink)
            im.save(os.path.join(d, f"{i:04d}.png"))
            i += 1


# --------------------------------------------------------------------------------------------
# wordnet-glosses

LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
            "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
            "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
            "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
            "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
            "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
            "adj.ppl").split()
WORDNET_CLASSES = ["noun.animal", "noun.plant", "noun.food", "noun.artifact", "noun.person", "noun.location",
                   "noun.body", "noun.substance", "noun.communication", "noun.act", "verb.motion",
                   "verb.communication"]


def wordnet_glosses(out, cache, per_class):
    per_class = per_class or 250
    root = debs(cache, "wordnet-base")
    by_class = {c: [] for c in WORDNET_CLASSES}
    for pos in ("noun", "verb"):
        with open(os.path.join(root, "usr/share/wordnet", f"data.{pos}"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue
                head, gloss = line.split(" | ", 1)
                fields = head.split()
                lex = LEXNAMES[int(fields[1])]
                gloss = gloss.strip()
                if lex in by_class and len(gloss) >= 20:
                    by_class[lex].append((fields[0], gloss))
    dest = fresh(out, "wordnet-glosses")
    for c, items in by_class.items():
        items.sort()
        random.Random(f"{SEED}-{c}").shuffle(items)
        d = os.path.join(dest, c)
        os.makedirs(d, exist_ok=True)
        for off, gloss in items[:per_class]:
            with open(os.path.join(d, f"{off}.txt"), "w", encoding="utf-8") as g:
                g.write(gloss + "\n")


RECIPES = {"xfig-drawings": xfig_drawings, "scripts": scripts, "wordnet-glosses": wordnet_glosses}


# --------------------------------------------------------------------------------------------
# check: counts and the few-label baseline


def check(path, k=10, draws=5):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    classes = sorted(c for c in os.listdir(path) if os.path.isdir(os.path.join(path, c)))
    files, y = [], []
    for i, c in enumerate(classes):
        fs = sorted(os.listdir(os.path.join(path, c)))
        files += [os.path.join(path, c, f) for f in fs]
        y += [i] * len(fs)
        print(f"  {c}: {len(fs)}")
    y = np.array(y)
    if files[0].endswith(".txt"):
        from sklearn.feature_extraction.text import TfidfVectorizer
        texts = [open(f, encoding="utf-8").read() for f in files]
        X = TfidfVectorizer(sublinear_tf=True).fit_transform(texts)
        kind = "TF-IDF"
    else:
        X = np.stack([np.asarray(Image.open(f).convert("RGB").resize((32, 32), Image.BILINEAR), np.float32).ravel()
                      for f in files])
        kind = "raw pixels 32px"
    accs, baccs = [], []
    for s in range(draws):
        rng = np.random.default_rng(s)
        tr = np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False) for c in range(len(classes))])
        te = np.setdiff1d(np.arange(len(y)), tr)
        Xtr, Xte = X[tr], X[te]
        if kind != "TF-IDF":
            sc = StandardScaler().fit(Xtr)
            Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
        p = LogisticRegression(max_iter=2000).fit(Xtr, y[tr]).predict(Xte)
        accs.append((p == y[te]).mean())
        baccs.append(balanced_accuracy_score(y[te], p))
    print(f"  {len(y)} items, {len(classes)} classes (chance {1 / len(classes):.3f}); {kind}, {k} labels/class, "
          f"{draws} draws: accuracy {np.mean(accs):.3f} (sd {np.std(accs):.3f}), balanced {np.mean(baccs):.3f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir")
    p.add_argument("--only", nargs="+", choices=sorted(RECIPES), help="build only these sets")
    p.add_argument("--per-class", type=int, default=0, help="items per class (0: each recipe's default)")
    p.add_argument("--check", action="store_true", help="after building, print counts and the 10-label baseline")
    p.add_argument("--check-only", action="store_true", help="only check sets already built in OUTDIR")
    a = p.parse_args()
    names = a.only or sorted(RECIPES)
    os.makedirs(a.outdir, exist_ok=True)
    if not a.check_only:
        with tempfile.TemporaryDirectory() as cache:
            for name in names:
                RECIPES[name](a.outdir, cache, a.per_class)
    for name in names:
        d = os.path.join(a.outdir, name)
        n = sum(len(fs) for _, _, fs in os.walk(d))
        print(f"{name}: {n} files")
        if a.check or a.check_only:
            check(d)
