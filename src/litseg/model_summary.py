"""Lightning's rich model summary, without a FLOPs count that was never measured."""

from typing import Any

from lightning.pytorch.callbacks import RichModelSummary as LightningRichModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from lightning.pytorch.utilities.model_summary.model_summary import get_formatted_model_size


class RichModelSummary(LightningRichModelSummary):
    """The table of layers and parameter counts printed before training.

    Lightning counts FLOPs only with an ``example_input_array``, which litseg's module does not
    set (its input size is the data's); without one Lightning prints a FLOPs column of zeros
    and "Total FLOPs: 0". This summary leaves both out when no FLOPs were counted, and is
    Lightning's own otherwise.
    """

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        """Print the layer table and the totals (rich), FLOPs only when counted."""
        if total_flops:
            LightningRichModelSummary.summarize(
                summary_data,
                total_parameters,
                trainable_parameters,
                model_size,
                total_training_modes,
                total_flops,
                **summarize_kwargs,
            )
            return
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        table.add_column(" ", style="dim")
        for name, _ in columns[1:]:
            left = name in ("Name", "Type", "Mode")
            table.add_column(name, justify="left" if left else "right", no_wrap=name == "Name")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)

        frozen = total_parameters - trainable_parameters
        grid = Table.grid(expand=True)
        grid.add_column()
        for label, value in (
            ("Trainable params", get_human_readable_count(int(trainable_parameters))),
            ("Non-trainable params", get_human_readable_count(int(frozen))),
            ("Total params", get_human_readable_count(int(total_parameters))),
            ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
            ("Modules in train mode", total_training_modes["train"]),
            ("Modules in eval mode", total_training_modes["eval"]),
        ):
            grid.add_row(f"[bold]{label}[/]: {value}")
        console.print(grid)


__all__ = ["RichModelSummary"]
