fn main() {
    println!("uring: {}", monoio::utils::detect_uring());
}
