"""Generated request bodies for the gateway: the bodies tests/serving/test_fuzz sends a runtime,
named for the models the gateway routes (and any text). Both gateway e2e modules use them."""

from hypothesis import strategies as st

from tests.serving import test_fuzz as fuzz

gateway_models = st.sampled_from(["chat", "chat:a1"]) | fuzz.texts
gateway_chat = fuzz._bodies(
    {"model": gateway_models, "messages": st.lists(fuzz.message, max_size=3)}, fuzz.CHAT
)
gateway_text = fuzz._bodies({"model": gateway_models, "prompt": fuzz.prompts}, fuzz.TEXT)
