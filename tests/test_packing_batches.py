"""`batch_size` counts examples whether or not they are packed: a packed fit takes the number of rows that hold
`batch_size` examples on average, so turning packing on does not silently make every step learn from ~2.4× as many
traces (16 rows of the quickstart's SFT held ~38 traces)."""

from promptcot_pl.models import load_tokenizer
from promptcot_pl.modules.data import PairDataModule


def test_a_packed_batch_holds_batch_size_examples_on_average(tiny_dir):
    pairs = [(f"Problem:\nWhat is {a} + {a}?\nSolution:\n", f"{a} + {a} = {2 * a}. The answer is {2 * a}.")
             for a in range(400)]
    tok = load_tokenizer(tiny_dir)
    plain = PairDataModule(tok, pairs, pairs[:8], batch_size=16, max_length=256)
    packed = PairDataModule(tok, pairs, pairs[:8], batch_size=16, max_length=256, packing=True)
    plain.setup(), packed.setup()
    assert plain.rows_per_batch == 16
    per_row = len(pairs) / len(packed.train_items)
    assert per_row > 4  # short examples: several per row
    assert abs(packed.rows_per_batch * per_row - 16) <= per_row / 2
    steps = len(packed.train_dataloader())
    assert abs(steps - len(plain.train_dataloader())) <= 2  # about as many steps per epoch as unpacked
