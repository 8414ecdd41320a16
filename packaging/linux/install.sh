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

case "$here" in
  *"
"*) echo "install.sh: the folder's path holds a line break, which a menu entry cannot name; move the folder" >&2
      exit 1 ;;
esac

ours=0  # the menu entry is this script's: so is the icon beside it
if [ -e "$entry" ] && ! grep -q "^$marker" "$entry"; then
  echo "install.sh: $entry exists and was not made by this script; left as it is" >&2
else
  ours=1
  tmp="$entry.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  # The program's path goes in as a quoted argument, escaped as the desktop-entry spec says:
  # inside the quotes \ " ` $ take a backslash, which the string rule doubles again, and % is
  # doubled. The path reaches awk through the environment, which (unlike -v or sed) leaves
  # every character as it is.
  SSLSTUDIO_PROGRAM="$here/SSLStudio" awk '
    function quoted(s,    out, i, c) {
      out = ""
      for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\") out = out "\\\\\\\\"
        else if (c == "\"" || c == "`" || c == "$") out = out "\\\\" c
        else if (c == "%") out = out "%%"
        else out = out c
      }
      return "\"" out "\""
    }
    /^Exec=/ { print "Exec=" quoted(ENVIRON["SSLSTUDIO_PROGRAM"]) " gui %f"; next }
    { print }' "$here/$app.desktop" > "$tmp"
  echo "$marker" >> "$tmp"
  mv "$tmp" "$entry"
  trap - EXIT
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
