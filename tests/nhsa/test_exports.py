"""The public surface of the nhsa package is pinned: a change to it is a decision, not an accident."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "amounts": {"MAX_FEN", "AmountAs", "fen_to_yuan", "to_fen", "to_wire"},
    "calllog": {"MIGRATIONS", "NAMESPACE", "TABLE", "Call", "CallLog", "CallState", "prune_calls"},
    "client": {"NhsaClient", "Person"},
    "envelope": {"MAX_ANSWER_BYTES", "PERSON_INFNOS", "SIGN_IN", "Answer", "Institution", "Ok", "Operator",
                 "Refused", "build_request", "encode_request", "parse_answer"},
    "errors": {"AmountError", "CallLogError", "EnvelopeError", "MsgidExhausted", "NhsaError", "UnknownOutcome"},
    "msgid": {"COUNTER_MAX", "MSGID_LENGTH", "MsgId", "check_fixmedins_code", "format_msgid", "inf_time",
              "msgid_prefix", "next_counter", "parse_msgid", "slot_range"},
    "profiles": {"DEFAULT_PROFILE", "LIMITED_FIELDS", "PROFILE_DIR", "Profile", "RefusalKind", "Refusals",
                 "available_profiles", "load_profile"},
    "redact": {"MAX_MESSAGE", "mask_text"},
    "wirejson": {"dumps", "loads"},
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_all_is_pinned_and_importable(module: str) -> None:
    mod = importlib.import_module(f"terminald.upstream.nhsa.{module}")
    assert set(mod.__all__) == EXPORTS[module]
    for name in mod.__all__:
        assert hasattr(mod, name)


def test_error_tree() -> None:
    from terminald.errors import TerminaldError
    from terminald.upstream.nhsa import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.NhsaError) and issubclass(cls, TerminaldError)
        assert cls.code.startswith("nhsa_")
    assert len({getattr(errors, n).code for n in errors.__all__}) == len(errors.__all__)
