; NOT YET RUN. NSIS script of the Windows installer: installs the onedir bundle that
; packaging/build.py makes (dist\SSLStudio) for the current user, with a Start menu shortcut and an
; uninstaller that removes only what it installed. Built by packaging/ci/bundle-windows-macos.yml:
;   makensis -DVERSION=0.1.0 packaging\windows\installer.nsi
Unicode true
!ifndef VERSION
  !define VERSION "0.0.0"
!endif
Name "SSL Studio ${VERSION}"
OutFile "..\..\dist\SSLStudio-${VERSION}-windows-x86_64-setup.exe"
RequestExecutionLevel user
InstallDir "$LOCALAPPDATA\Programs\SSL Studio"
SetCompressor /SOLID lzma

Page directory
Page instfiles
UninstPage uninstConfirm
UninstPage instfiles

Section "SSL Studio"
  SetOutPath "$INSTDIR"
  File /r "..\..\dist\SSLStudio\*.*"
  CreateShortcut "$SMPROGRAMS\SSL Studio.lnk" "$INSTDIR\SSLStudio.exe"
  WriteUninstaller "$INSTDIR\Uninstall SSL Studio.exe"
  WriteRegStr HKCU "Software\Microsoft\Windows\CurrentVersion\Uninstall\SSLStudio" "DisplayName" "SSL Studio"
  WriteRegStr HKCU "Software\Microsoft\Windows\CurrentVersion\Uninstall\SSLStudio" "UninstallString" "$\"$INSTDIR\Uninstall SSL Studio.exe$\""
  WriteRegStr HKCU "Software\Microsoft\Windows\CurrentVersion\Uninstall\SSLStudio" "DisplayVersion" "${VERSION}"
SectionEnd

Section "Uninstall"
  ; Only the program's own folder: projects and models live elsewhere and stay.
  Delete "$SMPROGRAMS\SSL Studio.lnk"
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\SSLStudio.exe"
  Delete "$INSTDIR\io.github.sslstudio.SSLStudio.svg"
  Delete "$INSTDIR\io.github.sslstudio.SSLStudio.desktop"
  Delete "$INSTDIR\Uninstall SSL Studio.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "Software\Microsoft\Windows\CurrentVersion\Uninstall\SSLStudio"
SectionEnd
