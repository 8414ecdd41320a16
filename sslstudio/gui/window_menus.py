"""The window's menus, toolbars and their actions, each wired to the part of the window that
does the work."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence

from sslstudio.gui.actions import make_action
from sslstudio.gui.recent import RecentPlaces


def build_menus(w) -> None:
    """Actions as attributes of the window `w` (tests and the guide find them there), in its
    menus and toolbars."""
    w.new_project_action = make_action(w, "&New project…", w.folders.new_project_dialog,
                                       QKeySequence.StandardKey.New)
    w.open_project_action = make_action(w, "&Open project…", w.folders.open_project_dialog,
                                        QKeySequence.StandardKey.Open)
    w.open_folder_action = make_action(w, "Open &folder…", w.folders.open_folder_dialog,
                                       "Ctrl+Shift+O", "Scan a folder of images or texts")
    w.quit_action = make_action(w, "&Quit", w.close, QKeySequence.StandardKey.Quit)
    w.start_action = make_action(w, "&Start training", w.training.start, "Ctrl+R")
    w.pause_action = make_action(w, "&Pause", w.training.toggle_pause, "Ctrl+P")
    w.stop_action = make_action(w, "S&top", w.training.stop, "Ctrl+.")
    w.sample_action = make_action(w, "Open &sample dataset", w.folders.open_sample,
                                  tip="300 Fashion-MNIST images to try SSL Studio on")
    w.about_action = make_action(w, "&About SSL Studio", w.about)
    w.encoders_action = make_action(w, "Pretrained &encoders…", w.encoders.show,
                                    tip="The encoders training can start from: size, "
                                    "source and licence; download one after a yes")
    w.guide_action = make_action(w, "&Getting started", w.show_guide,
                                 QKeySequence.StandardKey.HelpContents,
                                 "The flow from a folder to a model, and the shortcuts")
    w.export_model_action = make_action(w, "Export &model (ONNX)…", w.exports.open, "Ctrl+E",
                                        "A classifier or an encoder as ONNX, verified "
                                        "with onnxruntime")

    file_menu = w.menuBar().addMenu("&File")
    for action in (w.new_project_action, w.open_project_action, w.open_folder_action):
        file_menu.addAction(action)
    w.recent_projects_menu = file_menu.addMenu("Recent &projects")
    w.recent_folders_menu = file_menu.addMenu("Recent &folders")
    file_menu.addSeparator()
    file_menu.addAction(w.labelling.editing.import_labels_action)
    file_menu.addAction(w.labelling.editing.export_labels_action)
    file_menu.addAction(w.export_model_action)
    file_menu.addSeparator()
    file_menu.addAction(w.quit_action)
    edit_menu = w.menuBar().addMenu("&Edit")
    edit_menu.addAction(w.labelling.editing.undo_action)
    edit_menu.addAction(w.labelling.editing.redo_action)
    run_menu = w.menuBar().addMenu("&Run")
    for action in (w.start_action, w.pause_action, w.stop_action):
        run_menu.addAction(action)
    view_menu = w.menuBar().addMenu("&View")
    for dock in (w.data_dock, w.setup_dock, w.labels_dock, w.classifier_dock,
                 w.runs_dock, w.log_dock):
        view_menu.addAction(dock.toggleViewAction())
    help_menu = w.menuBar().addMenu("&Help")
    help_menu.addAction(w.guide_action)
    help_menu.addAction(w.sample_action)
    help_menu.addAction(w.encoders_action)
    help_menu.addAction(w.about_action)

    toolbar = w.addToolBar("Main")
    toolbar.setObjectName("main_toolbar")
    for action in (w.open_folder_action, w.start_action, w.pause_action, w.stop_action):
        toolbar.addAction(action)
    # The flow gets a row of its own, the window's whole width: where the user is and what
    # comes next, always in view.
    w.addToolBarBreak()
    flow_toolbar = w.addToolBar("Flow")
    flow_toolbar.setObjectName("flow_toolbar")
    flow_toolbar.setMovable(False)
    flow_toolbar.addWidget(w.flow_bar)
    view_menu.addAction(flow_toolbar.toggleViewAction())

    w.start_button.clicked.connect(w.training.start)
    w.pause_button.clicked.connect(w.training.toggle_pause)
    w.stop_button.clicked.connect(w.training.stop)
    w.recent = RecentPlaces(w.settings, w.recent_projects_menu, w.recent_folders_menu,
                               w.folders.open_project, w.folders.open_data_folder)
