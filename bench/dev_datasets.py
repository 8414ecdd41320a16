#!/usr/bin/env python3
"""Build extra labelled development datasets, of kinds the shared set lacks, from package registries.

    python bench/dev_datasets.py OUTDIR [--only NAME ...] [--per-class N] [--check]

Each recipe downloads Debian packages with `apt-get download` into a temporary folder, unpacks
them with `dpkg -x` (nothing is installed), and writes a class-per-subfolder folder
OUTDIR/<name>/<class>/<item>.png|.txt; `elpv-solar-cells` instead reads a PyPI wheel that
`pip download --no-deps` fetches (nothing is installed). Everything is drawn with a fixed seed,
so a rebuild from the same package versions gives the same files. Needs numpy and Pillow (with
FreeType and raqm for the script shaping); `xfig-drawings` also needs Ghostscript (`gs`, which
fig2dev calls for PNG output), and `manpages-de` groff; `--check` needs scikit-learn. These are
local dev data: never bundle them in the repo.

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
  OUTDIR/code-by-language/<language>/<i>.txt
      Source code by programming language: chunks of 15-30 consecutive non-blank lines (blank
      runs kept as one blank line, common indent removed) from real library sources, at most 4
      chunks a file, the files of a class's packages taken in turn. A file's leading comment
      block is skipped, and chunks that name a licence or copyright, are mostly comments, have
      a line over 160 characters (minified) or are mostly not letters (tables) are refused;
      exact duplicates are dropped. 15 classes, 300 each by default: c (glibc-source 2.36,
      LGPL-2.1+; gnulib 20230209, mostly GPL/LGPL), cpp (libstdc++-12-dev headers, GPL-3+ with
      the GCC runtime exception; libeigen3-dev 3.4.0, MPL-2.0), go (golang-1.19-src, BSD-3-clause
      "Go"), rust (rust-src 1.63.0: library and compiler, MIT or Apache-2.0), java
      (openjdk-17-source src.zip, GPL-2 with Classpath exception), python (libpython3.11-stdlib,
      PSF-2; python3-docutils 0.19, public domain; python3-setuptools 66.1, MIT),
      perl (perl-modules-5.36, POD removed, GPL-1+ or Artistic), ruby (libruby3.1, Ruby or
      BSD-2-clause; ruby-rack 2.2, MIT), javascript (node-lodash 4.17, eslint 6.4, node-acorn 8.8,
      node-commander 9.4, node-yargs 16.2, node-express 4.18; all MIT), php (php-twig 3.5,
      php-symfony-console 5.4, php-guzzlehttp-psr7 2.4, php-phpseclib 2.0; all MIT), shell
      (bash-completion 2.11, dracut-core 059, initramfs-tools-core 0.142, libtool 2.4.7
      ltmain.sh; GPL-2+), elisp (emacs-el 28.2, GPL-3+), tcl (tcllib 1.21, BSD), scheme
      (guile-3.0-libs 3.0.8, LGPL-3+), lua (lua-penlight 1.13, lua-busted 2.1, lua-luassert 1.9,
      lua-ldoc 1.4.6; all MIT). Go test files, testdata, glibc's iconvdata/localedata and
      jdk.localedata are left out.
  OUTDIR/manpages-de/<section>/<page>_<n>.txt
      German prose: single paragraphs (15-250 words) of the German translations of the Linux and
      GNU man pages, rendered by groff (one paragraph a line, no hyphenation), from the sections
      that describe things (not NAME, SYNOPSIS, SEE ALSO, EXAMPLES, STANDARDS, VERSIONS,
      ATTRIBUTES, AVAILABILITY, authors, bug-report and translator boilerplate); paragraphs left
      in English are dropped (German/English function-word count), and so are repeats (equal
      but for numbers) within and across sections. Class = man section: 1_commands,
      2_system_calls, 3_library_calls, 5_file_formats, 7_overviews, 8_administration; at most 4
      paragraphs a page, the pages taken in turn; 300 a class by default. Needs groff (Debian
      groff-base).  Source: Debian
      manpages-de and manpages-de-dev 4.18.1 (manpages-l10n; GPL-3+, the English originals under
      their own free licences).
  OUTDIR/app-screenshots/<application>/<i>_<figure>.png
      UI screenshots by application: the figures of the English user manuals (dialogs, windows,
      menus, panels; GIMP's filter example photos and tutorials, KiCad's icon folder and images
      under 100x200 px are left out; exact duplicates dropped), alpha flattened on white,
      longest side capped at 512 px. 6 classes, at most 300 each: gimp (GTK 2; Debian
      gimp-help-en 2.10.34, GFDL-1.2+), kicad (wxWidgets; kicad-doc-en 6.0.11, GPL-3+), gnumeric
      (GTK 3; gnumeric-doc 1.12.55, GFDL-1.1+; about 260), gnucash (GTK 3; gnucash-docs 4.13,
      GFDL-1.1+; about 220), qtcreator (Qt, many dark-themed; qtcreator-doc 9.0.2, GFDL-1.3),
      kstars (KDE; kstars-data 3.6.2, GFDL-1.2+; about 150). Downloads about 320 MB of packages
      (gnucash-docs and kstars-data are most of it).
  OUTDIR/elpv-solar-cells/<module type>_<defect status>/<cell>.png
      Electroluminescence (EL) camera images of single solar cells, cut from photographs of 44
      photovoltaic modules and normalized for size, perspective and lens distortion: 300x300 px,
      8-bit grayscale, copied unchanged. Class = the source's two annotations in labels.csv:
      module type (mono, poly crystalline) x expert defect probability (0 functional, 1/3
      possibly_defective, 2/3 likely_defective, 1 defective), 8 classes; of the 2,624 cells at
      most 300 a class: mono 300/117/56/300, poly 300/178/50/300 (functional, possibly, likely,
      defective), 1,601 in all.  Source: PyPI elpv-dataset 1.0.0.post1, the ELPV benchmark
      (Deitsch et al.; images and labels CC BY-NC-SA 4.0, i.e. non-commercial use only, loader
      code Apache-2.0).

Check a build (counts per class, and the baseline of the shared protocol with k labels per class:
raw pixels at 32x32 RGB + StandardScaler, or TF-IDF, then LogisticRegression; accuracy on all
other items, mean of 5 draws):

    python bench/dev_datasets.py ~/data --check-only

Without --only, --check-only checks every set folder in OUTDIR, the shared tool's sets too.
"""
import argparse, fnmatch, gettext, glob, gzip, hashlib, io, os, random, re, shutil, subprocess, sys, tarfile
import tempfile, textwrap, unicodedata, zipfile

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


# --------------------------------------------------------------------------------------------
# code-by-language

# class -> [(Debian package, glob under the unpacked root), ...]; "ARCHIVE::MEMBER-GLOB" reads
# the members of a .tar.xz or .zip that the package ships. A class with several sources draws
# from them in turn, so that no one project's house style stands for the language.
CODE_SOURCES = {
    "c": [("glibc-source", "usr/src/glibc/glibc-*.tar.xz::*.c"), ("gnulib", "usr/share/gnulib/lib/**/*.c")],
    "cpp": [("libstdc++-12-dev", "usr/include/c++/12/**/*"), ("libeigen3-dev", "usr/include/eigen3/**/*.h")],
    "go": [("golang-1.19-src", "usr/share/go-1.19/src/**/*.go")],
    "rust": [("rust-src", "usr/src/rustc-*/library/**/*.rs"), ("rust-src", "usr/src/rustc-*/compiler/**/*.rs")],
    "java": [("openjdk-17-source", "usr/lib/jvm/openjdk-17/lib/src.zip::java.*.java"),
             ("openjdk-17-source", "usr/lib/jvm/openjdk-17/lib/src.zip::jdk.*.java")],
    "python": [("libpython3.11-stdlib", "usr/lib/python3.11/**/*.py"),
               ("python3-docutils", "usr/lib/python3/dist-packages/docutils/**/*.py"),
               ("python3-setuptools", "usr/lib/python3/dist-packages/setuptools/**/*.py")],
    "perl": [("perl-modules-5.36", "usr/share/perl/5.36/**/*.pm")],
    "ruby": [("libruby3.1", "usr/lib/ruby/3.1.0/**/*.rb"), ("ruby-rack", "usr/share/rubygems-integration/all/gems/rack-*/lib/**/*.rb")],
    "javascript": [("node-lodash", "usr/share/nodejs/lodash/*.js"), ("eslint", "usr/share/nodejs/eslint/lib/**/*.js"),
                   ("node-acorn", "usr/share/nodejs/acorn*/**/*.js"), ("node-commander", "usr/share/nodejs/commander/**/*.js"),
                   ("node-yargs", "usr/share/nodejs/yargs/**/*.js"), ("node-express", "usr/share/nodejs/express/**/*.js")],
    "php": [("php-twig", "usr/share/php/Twig/**/*.php"), ("php-symfony-console", "usr/share/php/Symfony/**/*.php"),
            ("php-guzzlehttp-psr7", "usr/share/php/GuzzleHttp/**/*.php"), ("php-phpseclib", "usr/share/php/phpseclib/**/*.php")],
    "shell": [("bash-completion", "usr/share/bash-completion/completions/*"), ("dracut-core", "usr/lib/dracut/modules.d/**/*.sh"),
              ("initramfs-tools-core", "usr/share/initramfs-tools/**/*"), ("libtool", "usr/share/libtool/build-aux/ltmain.sh")],
    "elisp": [("emacs-el", "usr/share/emacs/28.2/lisp/**/*.el.gz")],
    "tcl": [("tcllib", "usr/share/tcltk/tcllib*/**/*.tcl")],
    "scheme": [("guile-3.0-libs", "usr/share/guile/3.0/**/*.scm")],
    "lua": [("lua-penlight", "usr/share/lua/5.1/pl/*.lua"), ("lua-busted", "usr/share/lua/5.1/busted*/**/*.lua"),
            ("lua-luassert", "usr/share/lua/5.1/luassert/**/*.lua"), ("lua-ldoc", "usr/share/lua/5.1/ldoc*/**/*.lua")],
}
# language -> (line-comment prefixes, (block-comment open, close) or None)
_CSTYLE = (("//", "/*", "*"), ("/*", "*/"))
CODE_COMMENTS = {
    "c": _CSTYLE, "cpp": _CSTYLE, "go": _CSTYLE, "rust": _CSTYLE, "java": _CSTYLE, "javascript": _CSTYLE,
    "php": (("//", "#", "/*", "*"), ("/*", "*/")), "python": (("#",), None), "perl": (("#",), None),
    "ruby": (("#",), ("=begin", "=end")), "shell": (("#",), None), "tcl": (("#",), None), "elisp": ((";",), None),
    "scheme": ((";",), ("#|", "|#")), "lua": (("--",), ("--[[", "]]")),
}
CODE_SKIP = re.compile(r"/(testdata|localedata|iconvdata|test-data)/|^jdk\.localedata/|_test\.go$|\.min\.js$")
CODE_LEGAL = re.compile(r"copyright|licen[cs]e|spdx|warranty|free software foundation|all rights reserved", re.I)
CODE_MAX_PER_FILE = 4


def _code_files(root, pattern):
    """(name, read) for each file a source pattern names: plain files under root, or archive members."""
    if "::" in pattern:
        arch, member = pattern.split("::")
        path = sorted(glob.glob(os.path.join(root, arch)))[0]
        if path.endswith(".zip"):
            z = zipfile.ZipFile(path)
            names = sorted(n for n in z.namelist() if fnmatch.fnmatch(n, member) and not CODE_SKIP.search(n))
            return [(n, (lambda n=n: z.read(n))) for n in names]
        data = {}
        with tarfile.open(path) as t:  # one pass through the compressed stream
            for m in t:
                if m.isfile() and fnmatch.fnmatch(m.name, member) and not CODE_SKIP.search(m.name):
                    data[m.name] = t.extractfile(m).read()
        return [(n, (lambda n=n: data[n])) for n in sorted(data)]
    out, real = [], set()
    top = os.path.realpath(root)
    for f in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
        r = os.path.realpath(f)
        rel = os.path.relpath(f, root)
        if (not r.startswith(top + os.sep) or r in real or not os.path.isfile(r) or CODE_SKIP.search(rel)):
            continue
        real.add(r)
        out.append((rel, (lambda r=r: gzip.open(r).read() if r.endswith(".gz") else open(r, "rb").read())))
    return out


def _comment_flags(lines, lang):
    prefixes, block = CODE_COMMENTS[lang]
    flags, inside = [], False
    for ln in lines:
        s = ln.strip()
        if inside:
            flags.append(True)
            inside = block[1] not in s
        elif block and s.startswith(block[0]):
            flags.append(True)
            inside = block[1] not in s[len(block[0]):]
        else:
            flags.append(s.startswith(prefixes))
    return flags


def _code_chunks(raw, lang, name):
    """Up to CODE_MAX_PER_FILE non-overlapping chunks of 15-30 consecutive non-blank lines, in a
    random order; the file's leading comment block (licence header) is skipped, and a chunk is
    refused when it names a licence or copyright, is mostly comments, has a line over 160
    characters (minified or generated code) or is mostly not letters (tables)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return []
    lines = text.expandtabs(8).splitlines() if lang == "go" else text.splitlines()
    if lang in ("perl", "ruby"):  # drop the data/POD after __END__, and POD blocks
        for i, ln in enumerate(lines):
            if ln.startswith(("__END__", "__DATA__")):
                lines = lines[:i]
                break
    if lang == "perl":
        kept, pod = [], False
        for ln in lines:
            if re.match(r"=[a-zA-Z]", ln):
                pod = not ln.startswith("=cut")
                continue
            if not pod:
                kept.append(ln)
        lines = kept
    lines = [ln.rstrip() for ln in lines]
    comment = _comment_flags(lines, lang)
    nb = [i for i, ln in enumerate(lines) if ln.strip()]
    head = 0
    while head < len(nb) and (comment[nb[head]] or lines[nb[head]].startswith(("#!", "<?php"))):
        head += 1
    rng = random.Random(f"{SEED}-{name}")
    starts = list(range(head, len(nb) - 15 + 1))
    rng.shuffle(starts)
    used, chunks = [], []
    for p in starts[:60]:
        n = rng.randint(15, 30)
        if p + n > len(nb):
            n = len(nb) - p
        if any(p < b and a < p + n for a, b in used):
            continue
        idx = nb[p:p + n]
        body = lines[idx[0]:idx[-1] + 1]
        joined = "\n".join(body)
        letters = sum(c.isalpha() for c in joined)
        if (max(len(ln) for ln in body) > 160 or CODE_LEGAL.search(joined)
                or sum(comment[i] for i in idx) > 0.5 * n or letters < 0.3 * len(joined.replace(" ", ""))):
            continue
        out = []
        for ln in body:  # runs of blank lines become one
            if ln or (out and out[-1]):
                out.append(ln)
        chunks.append(textwrap.dedent("\n".join(out)).strip("\n") + "\n")
        used.append((p, p + n))
        if len(chunks) >= CODE_MAX_PER_FILE:
            break
    return chunks


def code_by_language(out, cache, per_class):
    per_class = per_class or 300
    root = debs(cache, *sorted({pkg for srcs in CODE_SOURCES.values() for pkg, _ in srcs}))
    dest = fresh(out, "code-by-language")
    seen = set()
    for lang, sources in CODE_SOURCES.items():
        pools = []
        for i, (_, pattern) in enumerate(sources):
            files = _code_files(root, pattern)
            random.Random(f"{SEED}-{lang}-{i}").shuffle(files)
            pools.append(files)
        d = os.path.join(dest, lang)
        os.makedirs(d, exist_ok=True)
        chunks, n = {}, 0
        # round r takes the r-th chunk of each file, the sources' files taken in turn
        for r in range(CODE_MAX_PER_FILE):
            pos = [0] * len(pools)
            while n < per_class and any(p < len(f) for p, f in zip(pos, pools)):
                for s, files in enumerate(pools):
                    if pos[s] >= len(files) or n >= per_class:
                        continue
                    name, read = files[pos[s]]
                    pos[s] += 1
                    if name not in chunks:
                        chunks[name] = _code_chunks(read(), lang, name)
                    if r >= len(chunks[name]):
                        continue
                    key = " ".join(chunks[name][r].split())
                    if key in seen:
                        continue
                    seen.add(key)
                    with open(os.path.join(d, f"{n:04d}.txt"), "w", encoding="utf-8") as g:
                        g.write(chunks[name][r])
                    n += 1
            if n >= per_class:
                break
        print(f"code-by-language/{lang}: {n} chunks from {sum(1 for c in chunks.values() if c)} files", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# manpages-de

MAN_SECTIONS = {"1": "1_commands", "2": "2_system_calls", "3": "3_library_calls", "5": "5_file_formats",
                "7": "7_overviews", "8": "8_administration"}
# headings whose paragraphs are boilerplate, lists of names or code, not running German text
MAN_SKIP = re.compile(r"^(BEZEICHNUNG|ÜBERSICHT|SIEHE AUCH|ÜBERSETZUNG|FEHLER (MELDEN|BERICHTEN)|KOLOPHON|COLOPHON|"
                      r"AUTORE?N?|COPYRIGHT|BIBLIOTHEK|STANDARDS|KONFORM ZU|VERSIONEN|ATTRIBUTE|BEISPIEL|GESCHICHTE|"
                      r"VERFÜGBARKEIT)")
DE_WORDS = set("der die das und ist nicht den mit von wird werden für ein eine sie zu auf dem des oder auch bei kann "
               "wenn als wurde sind diese dieser".split())
EN_WORDS = set("the and of to is that with for are this be by which an if or not".split())


def _man_paragraphs(path):
    """Prose paragraphs of one page, rendered by groff (one paragraph a line), outside MAN_SKIP."""
    with gzip.open(path) as f:
        src = f.read()
    if src.lstrip().startswith(b".so "):  # an alias of another page
        return []
    r = subprocess.run(["groff", "-k", "-t", "-mandoc", "-Tutf8", "-P-cbou", "-rLL=3000n", "-rHY=0"],
                       input=src, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    paras, skip = [], True
    for ln in r.stdout.decode("utf-8", "replace").splitlines():
        if not ln.strip() or "    " in ln.strip():  # blank, or the running head and foot
            continue
        if not ln[0].isspace():
            skip = bool(MAN_SKIP.match(ln.strip()))
            continue
        words = ln.split()
        if skip or not 15 <= len(words) <= 250:
            continue
        low = [w.strip(".,;:()»«").lower() for w in words]
        de, en = sum(w in DE_WORDS for w in low), sum(w in EN_WORDS for w in low)
        if de >= 3 and de > 2 * en:
            paras.append(" ".join(words))
    return paras


def manpages_de(out, cache, per_class):
    per_class = per_class or 300
    if not shutil.which("groff"):
        sys.exit("manpages-de needs groff (Debian groff-base) to render the pages")
    root = debs(cache, "manpages-de", "manpages-de-dev")
    dest = fresh(out, "manpages-de")
    seen = set()
    for sec, cls in MAN_SECTIONS.items():
        pages = sorted(glob.glob(os.path.join(root, f"usr/share/man/de/man{sec}/*.gz")))
        rng = random.Random(f"{SEED}-man{sec}")
        rng.shuffle(pages)
        d = os.path.join(dest, cls)
        os.makedirs(d, exist_ok=True)
        paras, n = {}, 0
        for r in range(4):  # round r takes the r-th paragraph (in a random order) of each page
            for page in pages:
                if n >= per_class:
                    break
                if page not in paras:
                    paras[page] = _man_paragraphs(page)
                    random.Random(f"{SEED}-{os.path.basename(page)}").shuffle(paras[page])
                if r >= len(paras[page]):
                    continue
                key = " ".join(w for w in paras[page][r].split() if not any(c.isdigit() for c in w))
                if key in seen:  # the same paragraph, or one that differs only in numbers (ISO 8859-n)
                    continue
                seen.add(key)
                stem = re.sub(r"\.[0-9][^.]*\.gz$", "", os.path.basename(page))  # systemd.exec.5.gz -> systemd.exec
                while os.path.exists(os.path.join(d, f"{stem}_{r}.txt")):  # foo.1 and foo.1p
                    stem += "_"
                with open(os.path.join(d, f"{stem}_{r}.txt"), "w", encoding="utf-8") as g:
                    g.write(paras[page][r] + "\n")
                n += 1
        print(f"manpages-de/{cls}: {n} paragraphs from {sum(1 for p in paras.values() if p)} pages", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# app-screenshots

# class -> (Debian package, globs of the English manual's figures, path parts to leave out)
SCREENSHOT_APPS = {
    "gimp": ("gimp-help-en", ["usr/share/gimp/2.0/help/en/images/" + d + "/**/*" for d in
                              ("dialogs", "filters", "menus", "preferences", "tool-options", "toolbox", "using")],
             ("/examples/",)),
    "kicad": ("kicad-doc-en", ["usr/share/doc/kicad/help/en/images/**/*"], ("/icons/",)),
    "gnumeric": ("gnumeric-doc", ["usr/share/help/C/gnumeric/figures/**/*"], ()),
    "gnucash": ("gnucash-docs", ["usr/share/help/C/gnucash-*/figures/**/*"], ()),
    "qtcreator": ("qtcreator-doc", ["usr/share/qtcreator/doc/qtcreator/images/**/*"], ()),
    "kstars": ("kstars-data", ["usr/share/doc/HTML/en/kstars/**/*"], ()),
}


def app_screenshots(out, cache, per_class):
    per_class = per_class or 300
    root = debs(cache, *[pkg for pkg, _, _ in SCREENSHOT_APPS.values()])
    dest = fresh(out, "app-screenshots")
    seen = set()
    for cls, (_, patterns, leave) in SCREENSHOT_APPS.items():
        files = sorted({f for pat in patterns for f in glob.glob(os.path.join(root, pat), recursive=True)
                        if f.lower().endswith((".png", ".jpg", ".jpeg")) and os.path.isfile(f) and not os.path.islink(f)
                        and not any(x in f for x in leave)})
        random.Random(f"{SEED}-{cls}").shuffle(files)
        d = os.path.join(dest, cls)
        os.makedirs(d, exist_ok=True)
        n = 0
        for src in files:
            if n >= per_class:
                break
            with open(src, "rb") as f:
                raw = f.read()
            if hashlib.md5(raw).digest() in seen:
                continue
            seen.add(hashlib.md5(raw).digest())
            try:
                im = Image.open(io.BytesIO(raw))
                im.load()
            except OSError:
                continue
            if min(im.size) < 100 or max(im.size) < 200:  # icons, buttons, bullets
                continue
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im).convert("RGB")
            if np.asarray(im.convert("L")).std() < 4:  # blank
                continue
            im.thumbnail((512, 512), Image.LANCZOS)
            name = os.path.splitext(os.path.basename(src))[0]
            im.save(os.path.join(d, f"{n:04d}_{name}.png"))
            n += 1
        print(f"app-screenshots/{cls}: {n} of {len(files)} figures", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# elpv-solar-cells

ELPV_WHEEL = "elpv-dataset==1.0.0.post1"
ELPV_STATUS = ["functional", "possibly_defective", "likely_defective", "defective"]  # defect probability x 3


def wheel(cache, spec):
    """pip download one wheel (no dependencies) into cache/wheels; return its path."""
    d = os.path.join(cache, "wheels")
    os.makedirs(d, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", spec, "-d", d], cache)
    name = spec.split("==")[0].replace("-", "_")
    return sorted(glob.glob(os.path.join(d, f"{name}-*.whl")))[0]


def elpv_solar_cells(out, cache, per_class):
    per_class = per_class or 300
    z = zipfile.ZipFile(wheel(cache, ELPV_WHEEL))
    by_class = {}
    for line in z.read("elpv_dataset/data/labels.csv").decode("utf-8").splitlines():
        if not line.strip():
            continue
        path, prob, kind = line.split()
        by_class.setdefault(f"{kind}_{ELPV_STATUS[round(float(prob) * 3)]}", []).append(path)
    dest = fresh(out, "elpv-solar-cells")
    for cls in sorted(by_class):
        items = sorted(by_class[cls])
        random.Random(f"{SEED}-{cls}").shuffle(items)
        d = os.path.join(dest, cls)
        os.makedirs(d, exist_ok=True)
        for path in items[:per_class]:
            with open(os.path.join(d, os.path.basename(path)), "wb") as g:
                g.write(z.read("elpv_dataset/data/" + path))
        print(f"elpv-solar-cells/{cls}: {min(per_class, len(items))} of {len(items)}", file=sys.stderr)


RECIPES = {"xfig-drawings": xfig_drawings, "scripts": scripts, "wordnet-glosses": wordnet_glosses,
           "code-by-language": code_by_language, "manpages-de": manpages_de, "app-screenshots": app_screenshots,
           "elpv-solar-cells": elpv_solar_cells}


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
    p.add_argument("--check-only", action="store_true",
                   help="only check sets already built in OUTDIR (without --only: every set folder there)")
    a = p.parse_args()
    names = a.only or sorted(RECIPES)
    if a.check_only and not a.only:  # the shared tool's sets too
        names = sorted(n for n in os.listdir(a.outdir) if os.path.isdir(os.path.join(a.outdir, n)))
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
