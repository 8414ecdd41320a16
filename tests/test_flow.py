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
        (FlowFacts(items=300, runs_with_checkpoint=1), "Label", "label"),
        (FlowFacts(items=300, runs_with_checkpoint=1, classes=1, labelled=4), "Label", "label"),
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
