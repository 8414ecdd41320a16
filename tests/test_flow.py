"""The flow bar's state, from the facts the window holds (no window needed)."""

from sslstudio.gui.flow import CURRENT, DONE, TO_DO, FlowFacts, flow_state


def states(state):
    return {step.title: step.state for step in state.steps}


def test_each_step_of_the_first_hour_names_the_next_action():
    sequence = [
        (FlowFacts(), "Data", "open"),
        (FlowFacts(scanning=True, job="scan"), "Data", ""),
        (FlowFacts(items=300), "Pretrain", "train"),
        (FlowFacts(items=300, job="train"), "Pretrain", "stop"),
        (FlowFacts(items=300, runs_with_checkpoint=1), "Label", "add_class"),
        (FlowFacts(items=300, runs_with_checkpoint=1, class_names=("boot", "bag")), "Label", "label"),
        (FlowFacts(items=300, runs_with_checkpoint=1, classes=1, labelled=4,
                   class_names=("boot", "bag")), "Label", "label"),
        (FlowFacts(items=300, runs_with_checkpoint=1, classes=2, labelled=6), "Classify", "classify"),
        (FlowFacts(items=300, runs_with_checkpoint=1, classes=2, labelled=20, classifiers=1),
         "Export", "export"),
    ]
    for facts, current, action in sequence:
        state = flow_state(facts)
        assert [s.title for s in state.steps if s.state == CURRENT] == [current], facts
        assert state.next_action == action, facts
        assert bool(state.next_button) == bool(action)


def test_what_is_done_stays_done_and_the_details_say_how_much():
    state = flow_state(FlowFacts(items=70000, runs_with_checkpoint=2, classes=2, labelled=20,
                                 classifiers=3, current_classifier="in use: linear-1",
                                 exported="/p/exports/linear-1"))
    assert states(state) == {"Data": DONE, "Pretrain": DONE, "Label": DONE, "Classify": DONE,
                             "Export": CURRENT}
    assert state.step("Data").detail == "70,000 images"
    assert state.step("Pretrain").detail == "2 runs"
    assert state.step("Label").detail == "20 labelled, 2 classes"
    assert state.step("Classify").detail == "in use: linear-1"
    assert state.step("Export").detail == "saved to linear-1"
    first = flow_state(FlowFacts(items=5, item_noun="texts"))
    assert states(first)["Label"] == TO_DO and first.step("Data").detail == "5 texts"


def test_another_job_running_offers_no_button_and_says_so():
    state = flow_state(FlowFacts(items=300, runs_with_checkpoint=1, classes=2, labelled=10,
                                 job="adapt"))
    assert state.next_action == "" and state.next_text.startswith("Working (adapt)")


def test_few_labels_are_told_how_many_make_an_estimate_worth_reading():
    few = flow_state(FlowFacts(items=300, runs_with_checkpoint=1, classes=2, labelled=3))
    enough = flow_state(FlowFacts(items=300, runs_with_checkpoint=1, classes=2, labelled=12))
    assert "about 5 a class" in few.next_text and "about" not in enough.next_text


def test_the_label_step_asks_for_classes_first_and_names_each_key():
    """Someone who has never labelled is not told to press 1-9 before a class exists."""
    bare = flow_state(FlowFacts(items=300, runs_with_checkpoint=1))
    assert bare.next_action == "add_class" and "1-9" not in bare.next_text
    folders = flow_state(FlowFacts(items=300, runs_with_checkpoint=1,
                                   folder_classes=("bag", "boot", "coat", "dress", "shirt")))
    assert folders.next_action == "folder_classes" and folders.next_button == "Use the folder names"
    assert "5 subfolder names (bag, boot, coat, dress, …)" in folders.next_text
    one = flow_state(FlowFacts(items=300, runs_with_checkpoint=1, class_names=("boot",)))
    assert one.next_action == "add_class" and "\u201cboot\u201d" in one.next_text
    two = flow_state(FlowFacts(items=300, runs_with_checkpoint=1, class_names=("boot", "bag")))
    assert "(1 boot, 2 bag)" in two.next_text and two.next_button == "Go to labels"
    there = flow_state(FlowFacts(items=300, runs_with_checkpoint=1, class_names=("boot", "bag"),
                                 labels_shown=True))
    assert there.next_action == "" and there.next_text == two.next_text  # already at the labels


def test_a_paused_run_reads_paused():
    state = flow_state(FlowFacts(items=300, job="train", paused=True))
    assert state.step("Pretrain").detail == "paused" and "paused" in state.next_text
    assert state.next_action == "stop"
