"""Device entry point: `edgetype train` without the rest of the CLI (model_export.train has no main)."""
import argparse
import sys

from model_export.train import add_train_arguments, run_train_command

parser = argparse.ArgumentParser(prog="train_entry")
add_train_arguments(parser)
sys.exit(run_train_command(parser.parse_args()))
