#!/bin/sh
# Puts SSL Studio in this user's application menu: a desktop entry that starts the program in
# this folder, its icon, and an `sslstudio` command in ~/.local/bin. Run it again after moving the
# folder. It writes those three files only, and never replaces one it did not make:
# uninstall.sh removes exactly them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
app=io.github.sslstudio.SSLStudio
marker="X-SSLStudio-Installed-By=install.sh"
data=${XDG_DATA_HOME:-$HOME/.local/share}
entry="$data/applications/$app.desktop"
icon="$data/icons/hicolor/scalable/apps/$app.svg"
command="$HOME/.local/bin/sslstudio"

if [ ! -x "$here/SSLStudio" ]; then
  echo "install.sh: run it from the unpacked SSLStudio folder (no SSLStudio program beside it)" >&2
  exit 1
fi
mkdir -p "$(dirname "$entry")" "$(dirname "$icon")" "$(dirname "$command")"

ours=0  # the menu entry is this script's: so is the icon beside it
if [ -e "$entry" ] && ! grep -q "^$marker" "$entry"; then
  echo "install.sh: $entry exists and was not made by this script; left as it is" >&2
else
  ours=1
  # The program's path is quoted, so a folder with spaces in its name works.
  sed -e "s|^Exec=.*|Exec=\"$here/SSLStudio\" gui %f|" "$here/$app.desktop" > "$entry.tmp"
  echo "$marker" >> "$entry.tmp"
  mv "$entry.tmp" "$entry"
  echo "menu entry: $entry"
fi

if [ -e "$icon" ] && [ "$ours" = 0 ] && ! cmp -s "$icon" "$here/$app.svg"; then
  echo "install.sh: $icon exists and differs; left as it is" >&2
else
  cp "$here/$app.svg" "$icon"
  echo "icon: $icon"
fi

if [ -L "$command" ] && [ "$(basename "$(dirname "$(readlink "$command")")")" = "$(basename "$here")" ] \
    && [ "$(basename "$(readlink "$command")")" = SSLStudio ]; then
  ln -sf "$here/SSLStudio" "$command"
  echo "command: $command"
elif [ -e "$command" ] || [ -L "$command" ]; then
  echo "install.sh: $command exists (a pip install of SSL Studio?); left as it is" >&2
else
  ln -s "$here/SSLStudio" "$command"
  echo "command: $command"
fi

command -v update-desktop-database >/dev/null && update-desktop-database -q "$data/applications" || true
echo "SSL Studio is in your applications menu (under Science or Education)."
