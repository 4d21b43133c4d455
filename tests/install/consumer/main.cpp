// Parses a graph through an installed kiln and prints its parameter count.
#include <iostream>

#include "compiler/frontend/graph_json.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: kiln_consumer GRAPH.json\n";
    return 2;
  }
  try {
    kiln::Graph g = kiln::load_graph(argv[1]);
    std::cout << kiln::param_count(g) << "\n";
  } catch (const kiln::GraphError& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
