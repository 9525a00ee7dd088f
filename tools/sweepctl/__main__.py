from sweepctl.cli.main import entry

if __name__ == "__main__":   # importing it (as a spawned plot worker may) runs nothing
    entry()
