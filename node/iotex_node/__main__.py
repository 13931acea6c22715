from iotex_node.cli import main

main()
